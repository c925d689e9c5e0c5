import Seeded
import Blkif
import Trace
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif


/// The seed for randomized tests: `TRACE_TEST_SEED` when set, else a fixed one.
func testSeed(default value: UInt64) -> UInt64 {
    if let text = ProcessEnvironment.value(of: "TRACE_TEST_SEED"), let seed = UInt64(text) { return seed }
    return value
}

enum ProcessEnvironment {
    static func value(of name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        return String(cString: raw)
    }
}

/// Random events in canonical form: every value one the printer can write and
/// the reader gives back unchanged (e.g. `nrSegments` is nil when it would
/// equal the segment count, since the printer omits it then).
struct EventGenerator {
    var rng: SplitMix64

    init(seed: UInt64) {
        rng = SplitMix64(seed: seed)
    }

    mutating func events(count: Int) -> [TraceEventKind] {
        var latestDomid: UInt16?
        var events: [TraceEventKind] = []
        for _ in 0..<count {
            var event = self.event()
            switch event {
            case let .connect(connect): latestDomid = connect.domid
            // Half the grants use the default domain, to exercise omitting it.
            case var .grant(grant) where latestDomid != nil && coin():
                grant.domid = latestDomid!
                event = .grant(grant)
            default: break
            }
            events.append(event)
        }
        return events
    }

    mutating func coin() -> Bool { Bool.random(using: &rng) }

    /// Edge values often, arbitrary ones otherwise.
    mutating func number<T: FixedWidthInteger>(_ range: ClosedRange<T>) -> T {
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: range.lowerBound
        case 1: range.upperBound
        case 2: T.random(in: range.lowerBound...min(range.upperBound, range.lowerBound + 20), using: &rng)
        default: T.random(in: range, using: &rng)
        }
    }

    mutating func number<T: FixedWidthInteger>() -> T { number(T.min...T.max) }

    mutating func word(from alphabet: String, length: ClosedRange<Int>) -> String {
        let scalars = Array(alphabet.unicodeScalars)
        var text = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: length, using: &rng) { text.append(scalars.randomElement(using: &rng)!) }
        return String(text)
    }

    mutating func domid() -> UInt16 { number(1...32767) }

    mutating func grefs() -> ClosedRange<UInt32> {
        let first: UInt32 = number()
        let last = coin() ? first : UInt32.random(in: first...UInt32.max, using: &rng)
        return first...last
    }

    mutating func failingStatus() -> GrantStatus {
        GrantStatus.allCases.filter { $0 != .okay }.randomElement(using: &rng)!
    }

    mutating func event() -> TraceEventKind {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0:
            let printable = (0x21...0x7E).map { String(UnicodeScalar(UInt8($0))) }.filter { $0 != "#" }.joined()
            return .frontendKey(name: word(from: "abcxyzABZ0189-/_@", length: 1...20),
                                value: word(from: printable + "éß日", length: 1...20))
        case 1:
            return .connect(ConnectEvent(
                domid: domid(), protocolName: BlkifProtocol.allCases.randomElement(using: &rng)!,
                persistent: [nil, true, false].randomElement(using: &rng)!, backendPersistent: coin(),
                maxPersistent: coin() ? nil : number(0...Int.max), sectors: coin() ? 2_097_152 : number(),
                flush: coin(), discard: coin(), vbd: coin() ? 0 : number()))
        case 2:
            return .grant(GrantEvent(grefs: grefs(), readOnly: coin(), domid: domid()))
        case 3:
            return .revoke(RevokeEvent(grefs: grefs(), domid: domid()))
        case 4:
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: return .fail(.mapGref(gref: number(), times: number(1...Int.max), status: failingStatus()))
            case 1: return .fail(.mapNth(nth: number(1...Int.max), status: failingStatus()))
            case 2: return .fail(.allocNth(nth: number(1...Int.max)))
            default: return .fail(.hypercallNth(nth: number(1...Int.max)))
            }
        case 5:
            return .request(request())
        case 6:
            let bytes = (0..<Int.random(in: 1...112, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            return .raw(RawRequestEvent(bytes: bytes, vbd: coin() ? 0 : number(), hold: coin()))
        case 7:
            return .complete(id: number(), vbd: coin() ? 0 : number())
        case 8:
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                return .expect(.response(id: number(), status: BlkifResponseStatus.allCases.randomElement(using: &rng)!), vbd: 0)
            case 1:
                return .expect(.persistent(count: number(0...Int.max)), vbd: 0)
            default:
                let backend = coin() ? nil : word(from: "abcdefghijklmnopqrstuvwxyz0123456789_+-", length: 1...12)
                return .expect(.violation(CheckID.allCases.randomElement(using: &rng)!, backend: backend), vbd: 0)
            }
        default:
            return .disconnect(vbd: coin() ? 0 : number())
        }
    }

    mutating func request() -> RequestEvent {
        let named: [UInt8] = [0, 1, 2, 3, 5]
        let operation = coin() ? named.randomElement(using: &rng)! : number()
        var event = RequestEvent(id: number(), operation: operation, sector: number(),
                                 handle: coin() ? 0 : number(), vbd: coin() ? 0 : number(), hold: coin())
        if operation == BlkifOperation.discard.rawValue {
            event.nrSectors = coin() ? nil : number()
        } else {
            event.segments = (0..<Int.random(in: 0...11, using: &rng)).map { _ in
                BlkifSegment(gref: number(), firstSect: number(), lastSect: number())
            }
        }
        let nr: UInt8 = number()
        event.nrSegments = coin() || Int(nr) == event.segments.count ? nil : nr
        // The printer prints requests in canonical form (trailing all-zero
        // segments dropped, nr-sectors=0 omitted), so generate them so.
        return event.canonical
    }
}
