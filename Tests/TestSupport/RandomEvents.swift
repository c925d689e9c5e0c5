import Blkif
import Seeded
import Trace

/// Random trace events in canonical form, edge values often, from a seed.
/// Two kinds of trace: `textEvents` are any events the text format carries
/// (a vbd need not be connected, a raw may have any length), `pcapEvents`
/// only what the pcap encoding can carry (ring requests on vbds connected
/// before, raws of their protocol's request size).
public struct RandomEvents {
    public var rng: SplitMix64

    public init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    // MARK: primitives

    public mutating func coin() -> Bool { Bool.random(using: &rng) }

    /// Edge values often, arbitrary ones otherwise.
    public mutating func number<T: FixedWidthInteger>(_ range: ClosedRange<T>) -> T {
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: range.lowerBound
        case 1: range.upperBound
        case 2: T.random(in: range.lowerBound...min(range.upperBound, range.lowerBound + 20), using: &rng)
        default: T.random(in: range, using: &rng)
        }
    }

    public mutating func number<T: FixedWidthInteger>() -> T { number(T.min...T.max) }

    public mutating func element<T>(_ choices: [T]) -> T { choices.randomElement(using: &rng)! }

    mutating func word(from alphabet: String, length: ClosedRange<Int>) -> String {
        let scalars = Array(alphabet.unicodeScalars)
        var text = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: length, using: &rng) { text.append(element(scalars)) }
        return String(text)
    }

    mutating func domid() -> UInt16 { number(1...32767) }

    mutating func grefs() -> ClosedRange<UInt32> {
        let first: UInt32 = number()
        let last = coin() ? first : UInt32.random(in: first...UInt32.max, using: &rng)
        return first...last
    }

    mutating func failingStatus() -> GrantStatus { element(GrantStatus.allCases.filter { $0 != .okay }) }

    mutating func connect(vbd: UInt16, maxPersistent: ClosedRange<Int>) -> ConnectEvent {
        ConnectEvent(domid: domid(), protocolName: element(BlkifProtocol.allCases),
                     persistent: element([nil, true, false]), backendPersistent: coin(),
                     maxPersistent: coin() ? nil : number(maxPersistent), sectors: coin() ? 2_097_152 : number(),
                     flush: coin(), discard: coin(), vbd: vbd)
    }

    /// A request in canonical form (the printer prints requests so: trailing
    /// all-zero segments dropped, `nr=` only when it differs, `nr-sectors=0` omitted).
    public mutating func request(vbd: UInt16) -> RequestEvent {
        let named: [UInt8] = [0, 1, 2, 3, 5]
        let operation = coin() ? element(named) : number()
        var event = RequestEvent(id: number(), operation: operation, sector: number(),
                                 handle: coin() ? 0 : number(), vbd: vbd, hold: coin())
        if operation == BlkifOperation.discard.rawValue {
            event.nrSectors = coin() ? nil : number()
        } else {
            event.segments = (0..<Int.random(in: 0...11, using: &rng)).map { _ in
                BlkifSegment(gref: number(), firstSect: number(), lastSect: number())
            }
        }
        if coin() { event.nrSegments = number() }
        return event.canonical
    }

    mutating func expectation(vbd: UInt16) -> TraceEventKind {
        switch Int.random(in: 0..<3, using: &rng) {
        case 0: return .expect(.response(id: number(), status: element(BlkifResponseStatus.allCases)), vbd: vbd)
        case 1: return .expect(.persistent(count: number(0...Int.max)), vbd: vbd)
        default:
            let backend = coin() ? nil : word(from: "abcdefghijklmnopqrstuvwxyz0123456789_+-", length: 1...12)
            return .expect(.violation(element(CheckID.allCases), backend: backend), vbd: 0)
        }
    }

    mutating func fault() -> FaultEvent {
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: .mapGref(gref: number(), times: number(1...Int.max), status: failingStatus())
        case 1: .mapNth(nth: number(1...Int.max), status: failingStatus())
        case 2: .allocNth(nth: number(1...Int.max))
        default: .hypercallNth(nth: number(1...Int.max))
        }
    }

    // MARK: traces

    /// Any events the text format carries; half the grants use the latest
    /// connect's domain, to exercise omitting it.
    public mutating func textEvents(count: Int) -> [TraceEventKind] {
        var state = TraceState()
        return (0..<count).map { _ in
            var event = textEvent()
            if case var .grant(grant) = event, let latest = state.latestDomid, coin() {
                grant.domid = latest
                event = .grant(grant)
            }
            state.apply(event)
            return event
        }
    }

    /// An indirect request with up to `maxSegments` random descriptors and
    /// the pages they need (sometimes more, sometimes a trailing zero).
    public mutating func indirect(vbd: UInt16, maxSegments: Int = 600) -> IndirectRequestEvent {
        let count = Int.random(in: 0...maxSegments, using: &rng)
        let segments = (0..<count).map { _ in
            BlkifSegment(gref: number(), firstSect: number(), lastSect: number())
        }
        let needed = Blkif.indirectPages(forSegments: count)
        let pageCount = Int.random(in: needed...Blkif.maxIndirectPagesPerRequest, using: &rng)
        let pages = (0..<pageCount).map { _ in coin() ? UInt32(0) : number() }
        return IndirectRequestEvent(id: number(), operation: number(), sector: number(), segments: segments,
                                    nrSegments: coin() ? nil : number(), pages: pages, handle: coin() ? 0 : number(),
                                    vbd: vbd, hold: coin()).canonical
    }

    /// A format-2 event of no vbd: a guest write, a tick or a parameter.
    mutating func versionTwoEvent(domid: UInt16) -> TraceEventKind {
        switch Int.random(in: 0..<3, using: &rng) {
        case 0:
            let offset = Int.random(in: 0..<Blkif.pageSize, using: &rng)
            let bytes = (0..<Int.random(in: 1...min(64, Blkif.pageSize - offset), using: &rng)).map { _ in
                UInt8.random(in: 0...255, using: &rng)
            }
            return .write(GuestWriteEvent(gref: number(), domid: domid, offset: offset, bytes: bytes,
                                          afterReads: coin() ? nil : number(1...Int.max)))
        case 1:
            return .tick(milliseconds: number(0...TraceEventKind.maxTickMilliseconds))
        default:
            let parameter = element(ModuleParameter.allCases)
            return .parameter(parameter, value: number(0...parameter.maximum))
        }
    }

    mutating func textEvent() -> TraceEventKind {
        switch Int.random(in: 0..<12, using: &rng) {
        case 10: return .indirect(indirect(vbd: coin() ? 0 : number(), maxSegments: 40))
        case 11: return versionTwoEvent(domid: domid())
        case 0:
            let printable = (0x21...0x7E).map { String(UnicodeScalar(UInt8($0))) }.filter { $0 != "#" }.joined()
            return .frontendKey(name: word(from: "abcxyzABZ0189-/_@", length: 1...20),
                                value: word(from: printable + "éß日", length: 1...20))
        case 1: return .connect(connect(vbd: coin() ? 0 : number(), maxPersistent: 0...Int.max))
        case 2: return .grant(GrantEvent(grefs: grefs(), readOnly: coin(), domid: domid()))
        case 3: return .revoke(RevokeEvent(grefs: grefs(), domid: domid()))
        case 4: return .fail(fault())
        case 5: return .request(request(vbd: coin() ? 0 : number()))
        case 6:
            let bytes = (0..<Int.random(in: 1...112, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            return .raw(RawRequestEvent(bytes: bytes, vbd: coin() ? 0 : number(), hold: coin()))
        case 7: return .complete(id: number(), vbd: coin() ? 0 : number())
        case 8: return expectation(vbd: 0)
        default: return .disconnect(vbd: coin() ? 0 : number())
        }
    }

    /// Events the pcap encoding can carry: ring requests only on vbds
    /// connected before (not necessarily still connected), in their protocol.
    public mutating func pcapEvents(count: Int) -> [TraceEventKind] {
        var state = TraceState()
        var vbdsSeen: [UInt16] = []
        return (0..<count).map { _ in
            let event = pcapEvent(state: state, vbdsSeen: vbdsSeen)
            if case .connect(let connect) = event, !vbdsSeen.contains(connect.vbd) { vbdsSeen.append(connect.vbd) }
            state.apply(event)
            return event
        }
    }

    mutating func pcapVbd() -> UInt16 { element([0, 0, 1, 7, UInt16.max]) }

    mutating func pcapEvent(state: TraceState, vbdsSeen: [UInt16]) -> TraceEventKind {
        switch Int.random(in: 0..<14, using: &rng) {
        case 12:
            guard !vbdsSeen.isEmpty else { return versionTwoEvent(domid: state.latestDomid ?? 9) }
            return .indirect(indirect(vbd: element(vbdsSeen)))
        case 13:
            return versionTwoEvent(domid: state.latestDomid.map { coin() ? $0 : 9 } ?? 9)
        case 0, 1:
            return .connect(connect(vbd: pcapVbd(), maxPersistent: 0...400))
        case 2:
            return .grant(GrantEvent(grefs: grefs(), readOnly: coin(), domid: state.latestDomid.map { coin() ? $0 : 9 } ?? 9))
        case 3:
            return .revoke(RevokeEvent(grefs: 5...9, domid: state.latestDomid ?? 3))
        case 4:
            return coin() ? .fail(fault()) : .frontendKey(name: "feature-persistent", value: "1")
        case 5, 6, 7:
            guard !vbdsSeen.isEmpty else { return .disconnect(vbd: pcapVbd()) }
            return .request(request(vbd: element(vbdsSeen)))
        case 8:
            guard !vbdsSeen.isEmpty else { return .complete(id: 1, vbd: 0) }
            let vbd = element(vbdsSeen)
            let ringProtocol = state.ringProtocol(ofVbd: vbd)!
            var bytes = (0..<ringProtocol.request.size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if coin() { for index in 24..<bytes.count { bytes[index] = 0 } }   // sometimes close to canonical
            let hold = coin()
            // A raw that happens to be a request's bytes is printed as that request.
            if let request = RequestEvent(ringBytes: bytes, protocol: ringProtocol, vbd: vbd, hold: hold) {
                return .request(request)
            }
            return .raw(RawRequestEvent(bytes: bytes, vbd: vbd, hold: hold))
        case 9:
            return expectation(vbd: pcapVbd())
        case 10:
            return .complete(id: number(), vbd: pcapVbd())
        default:
            return .disconnect(vbd: pcapVbd())
        }
    }
}
