import Blkif

/// What a trace has set up so far, event by event: which vbds are connected
/// and in which ring protocol, which requests each holds in flight, and the
/// latest connect's domain. Every reader, writer, printer, decoder and runner
/// of traces asks this one type, so adding an event kind means editing the
/// one `apply` below.
///
/// `apply` is total: it takes any event in any order (printers and writers
/// meet traces that are not valid runs), and `refusal(of:)` says when an
/// event cannot follow in a valid run — the trace errors a replay reports.
public struct TraceState: Sendable {
    /// A connected vbd as the guest sees it.
    public struct ConnectedVbd: Hashable, Sendable {
        public let domid: UInt16
        public let ringProtocol: BlkifProtocol
        /// Ids of the requests put on the ring with `hold` and not completed
        /// yet, oldest first; each occupies a ring slot.
        public fileprivate(set) var held: [UInt64] = []

        /// Frees the slot of held request `id`, if it is held (in one
        /// dictionary lookup from `apply`, where finding and removing took two).
        fileprivate mutating func release(_ id: UInt64) {
            if let index = held.firstIndex(of: id) { held.remove(at: index) }
        }

        /// Whether another request fits on the ring (a held request keeps its slot).
        public var hasFreeSlot: Bool { held.count < ringProtocol.ringSize }
    }

    /// Connected vbds by number (looked up on every request and complete).
    public private(set) var connected = VbdTable<ConnectedVbd>()
    /// The domain of the latest connect: the default `domid=` of grant and revoke.
    public private(set) var latestDomid: UInt16?
    /// The protocol of the latest connect of each vbd, kept after its
    /// disconnect: recorded ring bytes on that vbd are read in its layout.
    private var latestProtocols = VbdTable<BlkifProtocol>()
    /// The format version the trace's header declares: events of a later
    /// version are refused by the readers. A state that read no header
    /// (a printer's, a decoder's) allows every version.
    public var formatVersion = TraceFormat.versions.upperBound

    public init() {}

    /// A state at the start of a trace whose header declares `version`.
    public init(formatVersion version: Int) {
        formatVersion = version
    }

    /// The state after `events`, from the start of a trace.
    public init(after events: some Sequence<TraceEventKind>) {
        for event in events { apply(event) }
    }

    /// The ring protocol of the latest connect of `vbd`, connected now or not.
    public func ringProtocol(ofVbd vbd: UInt16) -> BlkifProtocol? { latestProtocols[vbd] }

    /// Connected vbds in ascending order.
    public var connectedVbds: [UInt16] { connected.vbds }

    /// Connected vbds with at least one held request, in ascending order.
    public var holdingVbds: [UInt16] { connected.vbds.filter { !connected[$0]!.held.isEmpty } }

    /// Whether a request on `vbd` can be put on its ring now.
    public func canSubmit(vbd: UInt16) -> Bool { connected[vbd]?.hasFreeSlot ?? false }

    /// Grants and revokes name at most this many grefs in one event.
    public static let maxRangeLength = 65536

    /// Why `kind` cannot come next in a valid run (the message of its trace
    /// error), or nil when it can.
    public func refusal(of kind: TraceEventKind) -> String? {
        switch kind {
        case .frontendKey, .fail, .expect(.response, _), .expect(.violation, _), .write, .tick, .parameter, .generations:
            return nil
        case .connect(let connect):
            // On a live vbd, the frontend announcing Connected again: allowed,
            // but it cannot bring another domain or ring with it.
            guard let live = connected[connect.vbd],
                  live.domid != connect.domid || live.ringProtocol != connect.protocolName else { return nil }
            return "vbd \(connect.vbd) is connected for domain \(live.domid) with protocol \(live.ringProtocol); "
                + "a connect again must name the same domain and protocol (or disconnect it first)"
        case .grant(let grant):
            return Self.rangeRefusal(grant.grefs)
        case .revoke(let revoke):
            return Self.rangeRefusal(revoke.grefs)
        case .request(let request):
            guard let vbd = connected[request.vbd] else { return Self.notConnected(request.vbd) }
            return Self.fullRingRefusal(vbd, number: request.vbd, hold: request.hold)
        case .indirect(let request):
            guard let vbd = connected[request.vbd] else { return Self.notConnected(request.vbd) }
            return Self.fullRingRefusal(vbd, number: request.vbd, hold: request.hold)
        case .raw(let raw):
            guard let vbd = connected[raw.vbd] else { return Self.notConnected(raw.vbd) }
            let size = vbd.ringProtocol.request.size
            guard raw.bytes.count == size else {
                return "raw request is \(raw.bytes.count) bytes; protocol \(vbd.ringProtocol) takes \(size)"
            }
            return Self.fullRingRefusal(vbd, number: raw.vbd, hold: raw.hold)
        case let .complete(id, vbd):
            guard let connectedVbd = connected[vbd] else { return Self.notConnected(vbd) }
            return connectedVbd.held.contains(id) ? nil : "id \(id) is not held on vbd \(vbd)"
        case let .disconnect(vbd), let .expect(.persistent, vbd):
            return connected[vbd] == nil ? Self.notConnected(vbd) : nil
        }
    }

    /// Takes `kind` into account. Events a valid run would refuse change
    /// nothing they cannot (a complete of an id not held, a request on a vbd
    /// not connected).
    public mutating func apply(_ kind: TraceEventKind) {
        switch kind {
        case .connect(let connect):
            // Connected again on a live vbd (same domain and ring) keeps its
            // held requests. Another domain or protocol is refused by a
            // replay; here the newer one wins, as it does for a printer
            // reading what it is given.
            let again = connected[connect.vbd].map {
                $0.domid == connect.domid && $0.ringProtocol == connect.protocolName
            } ?? false
            if !again {
                connected[connect.vbd] = ConnectedVbd(domid: connect.domid, ringProtocol: connect.protocolName)
            }
            latestProtocols[connect.vbd] = connect.protocolName
            latestDomid = connect.domid
        case .request(let request):
            applyRequest(id: request.id, vbd: request.vbd, hold: request.hold)
        case .indirect(let request):
            applyRequest(id: request.id, vbd: request.vbd, hold: request.hold)
        case .raw(let raw):
            // Only a request whose bytes decode has an id to hold.
            if raw.hold, let ringProtocol = connected[raw.vbd]?.ringProtocol,
               let request = try? ringProtocol.decodeRequest(raw.bytes) {
                connected.update(raw.vbd) { $0.held.append(request.id) }
            }
        case let .complete(id, vbd):
            connected.update(vbd) { $0.release(id) }
        case .disconnect(let vbd):
            connected[vbd] = nil
        case .frontendKey, .grant, .revoke, .fail, .expect, .write, .tick, .parameter, .generations:
            break
        }
    }

    /// What `apply(.request(request))` does, from the request's fields: a
    /// reader that has them at hand need not switch over the whole event
    /// (and copy its payload out) to take it into account.
    public mutating func applyRequest(id: UInt64, vbd: UInt16, hold: Bool) {
        // `update` changes the held list in place (no copy of it).
        if hold { connected.update(vbd) { $0.held.append(id) } }
    }

    private static func notConnected(_ vbd: UInt16) -> String { "vbd \(vbd) is not connected" }

    private static func rangeRefusal(_ grefs: ClosedRange<UInt32>) -> String? {
        grefs.count > maxRangeLength ? "a range of \(grefs.count) grefs; at most \(maxRangeLength) in one event" : nil
    }

    /// A frontend cannot put a request on a full ring.
    private static func fullRingRefusal(_ vbd: ConnectedVbd, number: UInt16, hold: Bool) -> String? {
        guard !vbd.hasFreeSlot else { return nil }
        let slots = vbd.ringProtocol.ringSize
        return hold ? "more than \(slots) requests held on vbd \(number): the ring has \(slots) slots"
                    : "the ring of vbd \(number) is full: \(slots) requests are held; complete one first"
    }
}

extension TraceEventKind {
    /// The vbd the event concerns; 0 for events of no vbd (frontend keys,
    /// grants, revokes, faults, guest writes, ticks, parameters and expected
    /// violations, which concern the whole trace).
    public var vbd: UInt16 {
        switch self {
        case let .connect(connect): connect.vbd
        case let .request(request): request.vbd
        case let .raw(raw): raw.vbd
        case let .indirect(request): request.vbd
        case let .complete(_, vbd), let .disconnect(vbd): vbd
        case .expect(.violation, _): 0
        case let .expect(_, vbd): vbd
        case .frontendKey, .grant, .revoke, .fail, .write, .tick, .parameter, .generations: 0
        }
    }

    /// The same event on another vbd (events of no vbd are unchanged).
    public func onVbd(_ rename: (UInt16) -> UInt16) -> TraceEventKind {
        switch self {
        case .connect(var connect): connect.vbd = rename(connect.vbd); return .connect(connect)
        case .request(var request): request.vbd = rename(request.vbd); return .request(request)
        case .raw(var raw): raw.vbd = rename(raw.vbd); return .raw(raw)
        case .indirect(var request): request.vbd = rename(request.vbd); return .indirect(request)
        case let .complete(id, vbd): return .complete(id: id, vbd: rename(vbd))
        case let .disconnect(vbd): return .disconnect(vbd: rename(vbd))
        case let .expect(expectation, vbd): return .expect(expectation, vbd: rename(vbd))
        case .frontendKey, .grant, .revoke, .fail, .write, .tick, .parameter, .generations: return self
        }
    }
}
