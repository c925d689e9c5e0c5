import Blkif
import FakeXen

/// What one event must do, as the reference model predicts it from the event,
/// its own state and the few environment facts a reference may know (which
/// map ops the hypervisor refused, whether an allocation failed, what the
/// guest's pages hold). It says nothing about what the backend did: the
/// checks hold it against that.
struct Prediction {
    /// How the event may use the map hypercall.
    var mapOps: MapExpectation = .noneOutsideRequest
    /// Handles that must be unmapped during the event: the one-offs of the
    /// requests that complete or fail, and the whole tree at teardown.
    var unmaps: Set<GrantHandle> = []
    /// G2013: the unmap hypercalls themselves, in order, each its handles
    /// in order; nil under G2012, whose order the reference leaves open.
    var unmapBatchOrder: [[GrantHandle]]?
    /// The unmap step the backend must publish for each request that completes or fails, in order.
    var unmapBitmaps: [ExpectedBitmap] = []
    /// The responses the backend must publish, in the order the requests finish.
    var responses: [ExpectedResponse] = []
    /// Disk sectors the event writes, by vbd (a discard writes the initial token back).
    var diskWrites = WrittenTokens<UInt16>()
    /// Guest page sectors the event's reads fill.
    var guestWrites = GuestPageWrites()
    var alerts: ExpectedAlerts = .none
    /// Set by a connect: the mode the connection must be negotiated in.
    var negotiation: ExpectedNegotiation?
    /// Set by the disconnect of a known vbd: what must be gone afterwards.
    var teardown: ExpectedTeardown?
    /// The tree of the connection a connect or request acted on, as it must stand afterwards.
    var tree: TreeExpectation?
    /// Held I/O completes (a `complete` or a disconnect), so what must stay
    /// mapped changes even where no map or unmap batch runs.
    var completesHeldIO = false
    /// G2013: the connections whose grants' flags the event may have
    /// changed (`grant-states` holds them to the reference's).
    var grantStates: [UInt16] = []
    /// What must be mapped once the event is over.
    var mappedAfter = ExpectedMappings(connections: [:])

    /// Back to a fresh prediction's state (all but `mappedAfter`, which
    /// every prediction sets), keeping the lists' capacity.
    mutating func clear() {
        // Each list only if it holds something: most events fill few of them.
        mapOps = .noneOutsideRequest
        if !unmaps.isEmpty { unmaps.removeAll(keepingCapacity: unmaps.capacity <= Self.keptSetCapacity) }
        if !unmapBitmaps.isEmpty { unmapBitmaps.removeAllQuickly() }
        if unmapBatchOrder != nil { unmapBatchOrder = nil }
        if !responses.isEmpty { responses.removeAllQuickly() }
        if !diskWrites.isEmpty { diskWrites.removeAll() }
        if !guestWrites.isEmpty { guestWrites.removeAll() }
        alerts = .none
        negotiation = nil
        teardown = nil
        tree = nil
        completesHeldIO = false
        if !grantStates.isEmpty { grantStates.removeAll(keepingCapacity: true) }
        // `mappedAfter` is left as it is: `Predictor.predict` always sets it
        // anew, and resetting it cost a dictionary made and one released per
        // event. (Holding the reference's connections meanwhile copies their
        // small dictionary only when a connect or disconnect changes it.)
    }

    /// A set of unmaps larger than a request's (a teardown's) is not kept:
    /// clearing a set costs its capacity, on every event after.
    private static let keptSetCapacity = 64

    /// The vbd whose connection the checks look at: the one connected to or
    /// requested on, or the one torn down.
    var connectionVbd: UInt16? { tree?.vbd ?? teardown?.vbd }
}

/// How an event may use the map hypercall.
enum MapExpectation: Equatable {
    /// Not a request: no map hypercall at all.
    case noneOutsideRequest
    /// A request the reference cannot read (no such connection, or bytes that
    /// do not decode): what it maps is not judged here.
    case unjudged
    /// A request that maps nothing, and why.
    case noBatch(because: String)
    /// One batch of exactly these ops, in segment order, all of grants of `domid`.
    case oneBatch(domid: DomainID, ops: [ExpectedMapOp])
    /// G2013: exactly these batches, in order (none: no map hypercall), all of grants of `domid`.
    case batches(domid: DomainID, [[ExpectedMapOp]])
}

/// One `GNTMAP_host_map` op of the batch a request must issue.
struct ExpectedMapOp: Hashable {
    let gref: GrantRef
    let readOnly: Bool
}

struct ExpectedResponse: Hashable {
    let vbd: UInt16
    let id: UInt64
    let status: BlkifResponseStatus
    /// The request's operation byte, repeated in the response.
    let operation: UInt8
}

/// The bitmap of segments the backend must unmap for one request: its one-offs
/// and the segments demoted to one-offs because their persistent map failed.
struct ExpectedBitmap: Hashable {
    let vbd: UInt16
    let id: UInt64
    let bitmap: UInt16
}

/// How many overflow alerts the event must print.
enum ExpectedAlerts: Equatable {
    case none
    /// The persistent limit is reached for the first time on this connection.
    case one
    /// The request that reached the limit was aborted by an allocation
    /// failure, which may come before or after the alert: none or one. If one
    /// is seen, the connection has alerted.
    case noneOrOne(vbd: UInt16)
    /// G2013 logs no overflow alert, and its other alerts are not judged.
    case unjudged
}

/// What a connect must negotiate, with the inputs that decided it (they appear in reports).
struct ExpectedNegotiation: Hashable {
    let vbd: UInt16
    let persistent: Bool
    let backendOffers: Bool
    /// The frontend's `feature-persistent` key as written, nil when absent.
    let frontendFeature: String?
    /// What the backend's own `feature-persistent` key must read once
    /// connected (nil: absent): G2012 and G2013 write "1" when they offer
    /// persistent grants and nothing otherwise; G2018 always writes "1" or "0".
    let advertised: String?
    let domid: DomainID
}

/// A disconnect of a known vbd: its connection, mappings and allocations must be gone.
struct ExpectedTeardown: Hashable {
    let vbd: UInt16
    let domid: DomainID
}

/// The reference's tree of one connection after the event.
///
/// Holds the connection itself, not a copy of its tree: copying the map
/// retained its three lists on every request (and releasing them at the
/// next event released them again), where the tree checks read it only when
/// the tree changed. A prediction is read before the next event changes the
/// reference, so the tree read then is the tree as the event left it;
/// `version` is taken now, so a later change would show as a new version.
struct TreeExpectation {
    let vbd: UInt16
    let domid: DomainID
    let persistentMode: Bool
    let limit: Int
    /// Changes whenever `grants` does (see `ConnectionModel.version`).
    let version: UInt64
    private let connection: ConnectionModel

    /// gref → the handle its map returned.
    var grants: GrefHandleMap { connection.tree }

    /// `limit` when the connection's own (fixed at connect) is not the one in force.
    init(vbd: UInt16, connection: ConnectionModel, limit: Int? = nil) {
        self.vbd = vbd
        domid = connection.domid
        persistentMode = connection.persistentMode
        self.limit = limit ?? connection.limit
        version = connection.version
        self.connection = connection
    }
}

/// What the reference expects mapped once an event is over: every
/// connection's persistent grants and the one-off mappings of its held
/// requests. A view of the reference's connections rather than a copy: the
/// sets are large and most events never ask, so it is read on demand and
/// holds only until the next event.
struct ExpectedMappings {
    let connections: [UInt16: ConnectionModel]
    /// Moves whenever what is expected may have changed; nil when unknown.
    let version: MappedHandlesVersion?

    init(connections: [UInt16: ConnectionModel], version: MappedHandlesVersion? = nil) {
        self.connections = connections
        self.version = version
    }

    /// The domains with a connection, in order.
    var domains: [DomainID] { Set(connections.values.map(\.domid)).sorted() }

    func handles(of domid: DomainID) -> Set<GrantHandle> {
        // Straight into one set, without the lists in between.
        var handles = Set<GrantHandle>()
        for model in connections.values where model.domid == domid {
            handles.reserveCapacity(handles.count + model.tree.count)
            model.tree.forEach { _, handle in handles.insert(handle) }
            for request in model.inFlight { for handle in request.oneOffHandles { handles.insert(handle) } }
        }
        return handles
    }

    /// The handles of every connection's persistent grants.
    func persistentHandles() -> Set<GrantHandle> {
        var handles = Set<GrantHandle>()
        for model in connections.values { model.tree.forEach { _, handle in handles.insert(handle) } }
        return handles
    }
}

/// See `ReferenceModel.mappedHandlesVersion`.
struct MappedHandlesVersion: Equatable {
    let connections: UInt64
    let mappings: UInt64
}

extension Array {
    /// Empties a short list, keeping its capacity. A completion leaves one
    /// entry in each of the prediction's lists (a disconnect one per held
    /// request): removing them from the end is a few instructions each,
    /// where `removeAll(keepingCapacity:)` went through the generic range
    /// replacement (~135 instructions) on every completion.
    mutating func removeAllQuickly() {
        while !isEmpty { removeLast() }
    }
}
