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
    let reservedPages: ReservedPages
    var id: UInt64 = 0
    var operation: UInt8 = 0
    var nrPages: Int = 0
    /// One handle per segment (11 fit in 16 lanes): a vector, not an array,
    /// so that a connect's 32 slots allocate nothing and a write to a handle
    /// takes no uniqueness check.
    var handles = SIMD16<GrantHandle>(repeating: invalidHandle)
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
    /// The mapper's per-segment bookkeeping, kept between requests so that its
    /// arrays are allocated once (one request maps at a time per connection).
    var mappingScratch = SegmentMapper.Scratch.placeholder

    init(parameters: ConnectParameters, persistentMode: Bool, device: BlockDevice, reservedPages: ReservedPages,
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
            PendingRequest(slot: slot, reservedPages: reservedPages[run: (slot * perSlot)..<((slot + 1) * perSlot)])
        }
        freeSlots = Array((0..<ring).reversed())
    }

    func takeSlot() -> Int? { freeSlots.popLast() }
    func releaseSlot(_ slot: Int) { freeSlots.append(slot) }

    /// Runs `body` on one slot in place: one access to `slots` for a whole
    /// loop over segments instead of one per field written. `body` must not
    /// touch `slots` itself (the exclusivity check would stop it).
    func withSlot<Result, Failure: Error>(_ slot: Int, _ body: (inout PendingRequest) throws(Failure) -> Result)
        throws(Failure) -> Result {
        try body(&slots[slot])
    }

    /// Runs `body` on the persistent grant tree in place: one access for a
    /// whole loop over segments. `body` must not reach `persistentGrants` itself.
    func withPersistentGrants<Result, Failure: Error>(_ body: (inout PersistentGrantTree) throws(Failure) -> Result)
        throws(Failure) -> Result {
        try body(&persistentGrants)
    }

    /// The oldest in-flight slot whose request has this id.
    func oldestInFlight(id: UInt64) -> Int? {
        // One read of `slots` for the whole scan, not one per in-flight slot.
        let slots = self.slots
        return inFlight.first { slots[$0].id == id }
    }

    /// Moves the mapper's scratch out (leaving the placeholder, which allocates
    /// nothing) so that its arrays stay uniquely referenced while it works.
    func takeMappingScratch() -> SegmentMapper.Scratch {
        defer { mappingScratch = .placeholder }
        return mappingScratch
    }
}

/// The live connections by vbd. A host serves a handful of vbds, so a scan of
/// a short array is cheaper than hashing the vbd on every ring event; the
/// order of entries is never observed.
struct ConnectionTable {
    private var entries: [Connection] = []

    subscript(vbd: UInt16) -> Connection? {
        for connection in entries where connection.parameters.vbd == vbd { return connection }
        return nil
    }

    mutating func add(_ connection: Connection) {
        precondition(self[connection.parameters.vbd] == nil, "vbd \(connection.parameters.vbd) is already connected")
        entries.append(connection)
    }

    mutating func remove(vbd: UInt16) {
        entries.removeAll { $0.parameters.vbd == vbd }
    }
}
