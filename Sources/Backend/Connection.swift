import Blkif
import FakeXen

/// What the backend is told when a frontend connects (the toolstack's and
/// the disk's facts; the frontend's own wishes are read from xenstore).
public struct ConnectParameters: Hashable, Sendable {
    public var domid: DomainID
    public var vbd: UInt16
    public var ringProtocol: BlkifProtocol
    /// Whether this backend offers persistent grants at all.
    public var offersPersistent: Bool
    /// The persistent grant limit; nil takes the seed's ring size × 11.
    public var maxPersistent: Int?
    public var sectors: UInt64
    public var flush: Bool
    public var discard: Bool

    public init(domid: DomainID, vbd: UInt16 = 0, ringProtocol: BlkifProtocol = .native, offersPersistent: Bool = true,
                maxPersistent: Int? = nil, sectors: UInt64 = 2_097_152, flush: Bool = true, discard: Bool = false) {
        self.domid = domid
        self.vbd = vbd
        self.ringProtocol = ringProtocol
        self.offersPersistent = offersPersistent
        self.maxPersistent = maxPersistent
        self.sectors = sectors
        self.flush = flush
        self.discard = discard
    }
}

/// `struct pending_req`: one ring slot's worth of bookkeeping, reused
/// request after request, which is why a stale bitmap can survive in it.
struct PendingRequest {
    let slot: Int
    /// `blkbk->pending_page(req, i)`: pages set aside for non-persistent maps.
    let reservedPages: [PageFrame]
    var id: UInt64 = 0
    var operation: UInt8 = 0
    var nrPages: Int = 0
    var handles = [GrantHandle](repeating: invalidHandle, count: Blkif.maxSegmentsPerRequest)
    var unmapBitmap: UInt16 = 0
    var bio: BioID?
}

/// `struct xen_blkif` for one vbd: the negotiated mode, the tree of
/// persistent grants, and the ring's pending requests.
final class Connection {
    let parameters: ConnectParameters
    let owner: AllocationOwner
    let device: BlockDevice
    let maxPersistent: Int
    var persistentMode: Bool
    var overflowAlerted = false
    var persistentGrants: PersistentGrantTree
    var slots: [PendingRequest]
    /// `list_add` pushes freed slots at the head and `alloc_req` takes the head: LIFO.
    var freeSlots: [Int]
    /// Slots whose I/O is in flight, oldest first.
    var inFlight: [Int] = []

    init(parameters: ConnectParameters, persistentMode: Bool, device: BlockDevice, reservedPages: [PageFrame],
         heap: KernelHeap<PersistentGrant>) {
        self.parameters = parameters
        self.owner = AllocationOwner(domid: parameters.domid, vbd: parameters.vbd)
        self.device = device
        self.persistentMode = persistentMode
        self.persistentGrants = PersistentGrantTree(heap: heap)
        self.maxPersistent = parameters.maxPersistent ?? parameters.ringProtocol.maxPersistentGrants
        let ring = parameters.ringProtocol.ringSize
        let perSlot = Blkif.maxSegmentsPerRequest
        slots = (0..<ring).map { slot in
            PendingRequest(slot: slot, reservedPages: Array(reservedPages[(slot * perSlot)..<((slot + 1) * perSlot)]))
        }
        freeSlots = Array((0..<ring).reversed())
    }

    func takeSlot() -> Int? { freeSlots.popLast() }
    func releaseSlot(_ slot: Int) { freeSlots.append(slot) }
}
