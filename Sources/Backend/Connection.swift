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
    /// G2018: the hotplug script writes `physical-device` (the vbd is
    /// created) only after this connect's `connect_ring` negotiated.
    public var hotplugAfterConnect: Bool

    public init(domid: DomainID, vbd: UInt16 = 0, ringProtocol: BlkifProtocol = .native, offersPersistent: Bool = true,
                maxPersistent: Int? = nil, sectors: UInt64 = 2_097_152, flush: Bool = true, discard: Bool = false,
                hotplugAfterConnect: Bool = false) {
        self.domid = domid
        self.vbd = vbd
        self.ringProtocol = ringProtocol
        self.offersPersistent = offersPersistent
        self.maxPersistent = maxPersistent
        self.sectors = sectors
        self.flush = flush
        self.discard = discard
        self.hotplugAfterConnect = hotplugAfterConnect
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

    /// A new request takes the slot (what is left of the previous one stays,
    /// the bitmap among it).
    mutating func begin(id: UInt64, operation: UInt8, nrPages: Int) {
        self.id = id
        self.operation = operation
        self.nrPages = nrPages
    }

    /// `xen_blkbk_unmap`'s walk of the bitmap: queues an unmap for each set
    /// bit with a handle and forgets that handle so nothing unmaps it twice.
    /// Returns the publication of the bitmap as it stood, and the request's
    /// id and operation.
    mutating func takeUnmapOps(into ops: inout [UnmapOp], vbd: UInt16)
        -> (unmapping: BackendPublication, id: UInt64, operation: UInt8) {
        let unmapping = BackendPublication.unmapping(vbd: vbd, id: id, slot: slot, nrSegments: nrPages,
                                                     bitmap: unmapBitmap)
        for index in 0..<min(nrPages, Blkif.maxSegmentsPerRequest) {
            guard unmapBitmap & (1 << index) != 0 else { continue }
            let handle = handles[index]
            guard handle != invalidHandle else { continue }
            ops.append(UnmapOp(hostPage: reservedPages[index], handle: handle))
            handles[index] = invalidHandle
        }
        return (unmapping, id, operation)
    }
}

/// What a connection changes as it works: the negotiated mode, the tree of
/// persistent grants and the ring's pending requests. One value, so that a
/// request, a completion or a teardown is one access to the connection (the
/// runtime exclusivity check of a class property cost more per field than
/// the field's own work), and the fields within it are reached statically.
struct ConnectionState {
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
    var mappingScratch = SegmentMapper.Scratch.sized()
    /// A G2013 connection's pool, flags, slots and timer (empty in G2012).
    var g2013 = G2013State()

    mutating func takeSlot() -> Int? { freeSlots.popLast() }
    mutating func releaseSlot(_ slot: Int) { freeSlots.append(slot) }

    /// The oldest in-flight slot whose request has this id.
    func oldestInFlight(id: UInt64) -> Int? {
        inFlight.first { slots[$0].id == id }
    }
}

/// `struct xen_blkif` for one vbd: what was negotiated at connect, and the
/// state that requests change.
final class Connection {
    let parameters: ConnectParameters
    let owner: AllocationOwner
    let device: BlockDevice
    /// The ring page the connection answers on, fresh at each connect.
    let ring: SharedRing
    let maxPersistent: Int
    /// Reached through `withState` on the request path: one access per request.
    // Unchecked exclusivity: `state` is private to this file, where it is
    // reached only by `withState` and the read-only getters below. The bodies
    // handed to `withState` (Blkback's request, completion and teardown) reach
    // the state only through their inout argument: nothing they call (the
    // mapper, the tree, FakeXen, which knows nothing of the backend) calls
    // `withState` or a getter, and the getters (for observers between events)
    // are never called from inside a body. So no two accesses can overlap,
    // and the runtime check, one per request and one per completion, goes.
    @exclusivity(unchecked) private var state: ConnectionState

    init(parameters: ConnectParameters, persistentMode: Bool, device: BlockDevice, ring: SharedRing,
         reservedPages: ReservedPages, heap: KernelHeap<PersistentGrant>) {
        self.parameters = parameters
        self.owner = AllocationOwner(domid: parameters.domid, vbd: parameters.vbd)
        self.device = device
        self.ring = ring
        self.maxPersistent = parameters.maxPersistent ?? parameters.ringProtocol.maxPersistentGrants
        let ring = parameters.ringProtocol.ringSize
        let perSlot = Blkif.maxSegmentsPerRequest
        let slots = (0..<ring).map { slot in
            PendingRequest(slot: slot, reservedPages: reservedPages[run: (slot * perSlot)..<((slot + 1) * perSlot)])
        }
        state = ConnectionState(persistentMode: persistentMode, persistentGrants: PersistentGrantTree(heap: heap),
                                slots: slots, freeSlots: Array((0..<ring).reversed()))
    }

    /// A G2013 connection: no reserved pages (maps take pages from the
    /// pool), 32 slots of 256 entries, the limit a module parameter read
    /// when used (`maxPersistent` is its value at connect, for reports).
    init(g2013 parameters: ConnectParameters, persistentMode: Bool, maxPersistentAtConnect: Int, device: BlockDevice,
         ring: SharedRing, heap: KernelHeap<PersistentGrant>) {
        self.parameters = parameters
        self.owner = AllocationOwner(domid: parameters.domid, vbd: parameters.vbd)
        self.device = device
        self.ring = ring
        self.maxPersistent = maxPersistentAtConnect
        state = ConnectionState(persistentMode: persistentMode, persistentGrants: PersistentGrantTree(heap: heap),
                                slots: [], freeSlots: [], g2013: .connected())
    }

    /// Runs `body` on the connection's state in place: one access for a whole
    /// request, completion or teardown. `body` must not reach `state` another
    /// way (the exclusivity check would stop it).
    func withState<Result, Failure: Error>(_ body: (inout ConnectionState) throws(Failure) -> Result)
        throws(Failure) -> Result {
        try body(&state)
    }

    /// The state as it stands, for observers between events.
    var currentState: ConnectionState { state }
    var persistentMode: Bool { state.persistentMode }
    var persistentCount: Int { state.persistentGrants.count }
    var treeVersion: UInt64 { state.persistentGrants.version }
    var treeRoot: KernelAddress? { state.persistentGrants.root }
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

    /// Every live connection, in the order they connected.
    var all: [Connection] { entries }

    mutating func remove(vbd: UInt16) {
        entries.removeAll { $0.parameters.vbd == vbd }
    }
}
