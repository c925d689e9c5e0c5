import Blkif
import TestSupport
import Testing
@testable import Trace

/// The quick paths (`QuickEventLine`, `RequestEvent(canonicalRingBytes:)`)
/// must agree with the precise readers they stand in front of: whatever a
/// quick path accepts, the precise one reads as the same event.
@Suite struct QuickReadingTests {
    /// The precise reading of one line: the event, or the error.
    private static func precise(_ line: String, after state: TraceState) -> Result<TraceEvent, TraceError>? {
        let tokens = LineSource.tokens(of: line)
        guard !tokens.isEmpty else { return nil }
        do throws(TraceError) {
            return .success(try EventParser(file: "quick.trace").parse(tokens, line: 1, after: state))
        } catch {
            return .failure(error)
        }
    }

    private static func quick(_ line: String, after state: TraceState) -> TraceEvent? {
        var line = line
        line.makeContiguousUTF8()
        let found = line.utf8.withContiguousStorageIfAvailable {
            QuickEventLine.parse($0, 0..<$0.count, latestDomid: state.latestDomid)
        } ?? nil
        return found.map { TraceEvent(kind: $0.kind, position: .line(1, column: $0.column)) }
    }

    /// Whatever the quick reader accepts, the precise one reads the same; returns whether it accepted.
    @discardableResult
    private static func expectAgreement(_ line: String, after state: TraceState) -> Bool {
        guard let quick = quick(line, after: state) else { return false }
        #expect(precise(line, after: state) == .success(quick), "line: \(line)")
        return true
    }

    /// The hot lines as the printer writes them are all read quickly, and alike.
    @Test func printedLinesAreReadQuicklyAndAlike() {
        var generator = RandomEvents(seed: testSeed(default: 0x51_C0DE))
        var state = TraceState()
        var quickly = 0
        for event in generator.textEvents(count: 3_000) {
            let line = TextTracePrinter.line(for: event, after: state)
            let accepted = Self.expectAgreement(line, after: state)
            switch event {
            case .request, .complete, .expect(.response, _), .grant:
                #expect(accepted, "not read quickly: \(line)")
                quickly += accepted ? 1 : 0
            default:
                #expect(!accepted, "read quickly, though it is not a hot line: \(line)")
            }
            state.apply(event)
        }
        #expect(quickly > 500)
    }

    @Test func spacingCommentsAndOrderDoNotMatter() {
        var state = TraceState()
        state.apply(.connect(ConnectEvent(domid: 4)))
        let lines = [
            "  \tcomplete id=5 # done",
            "complete\tvbd=3 id=0x1F\r",
            "request hold seg=1:0-7 sector=8 op=write id=1 seg=0x2:1-2",
            "request id=1 op=discard sector=9 nr-sectors=0x10 nr=3",
            "request id=1 op=200 sector=9 nr=0",
            "grant ro gref=1..11",
            "grant gref=7 domid=32767",
            "expect response status=eopnotsupp id=3 vbd=9", "complete id=1#2",
            "request id=007 op=read sector=18446744073709551615 seg=4294967295:255-0",
        ]
        for line in lines {
            #expect(Self.expectAgreement(line, after: state), "not read quickly: \(line)")
        }
        let event = Self.quick("  \tcomplete id=5 # done", after: state)
        #expect(event == TraceEvent(kind: .complete(id: 5, vbd: 0), position: .line(1, column: 4)))
    }

    /// Lines that are wrong, or that the quick reader leaves to the precise
    /// one, are not read quickly (so their errors come from `EventParser`).
    @Test func surprisesAreLeftToThePreciseParser() {
        let noConnect = TraceState()
        let lines = [
            "", "   ", "# only a comment", "complete", "complete id=", "complete id=1 id=2", "complete id=1 hold",
            "complete id=-1", "complete id=18446744073709551616", "complete id=0x", "complete id=0X1",
            "complete id=1 vbd=65536", "complete =1", "complete id=1=2", "complete#id=1",
            "request id=1 op=write", "request id=1 op=read sector=1 nr-sectors=1", "request id=1 op=discard sector=1 seg=1:0-7",
            "request id=1 op=256 sector=0", "request id=1 op=Read sector=0", "request id=1 op=read sector=0 seg=1:0",
            "request id=1 op=read sector=0 seg=1:0-7-1", "request id=1 op=read sector=0 seg=1:0-256",
            "request id=1 op=read sector=0 hold hold", "request id=1 op=read sector=0 hold=1",
            "request id=1 op=read sector=0 nr=256", "request id=1 op=read sector=0 handle=65536",
            "request id=1 op=read sector=0 " + Array(repeating: "seg=1:0-7", count: 12).joined(separator: " "),
            "expect response id=1", "expect response id=1 status=ok", "expect persistent=1", "expect violation x",
            "grant gref=1", "grant gref=2..1 domid=1", "grant gref=1...3 domid=1", "grant gref=1 domid=0",
            "grant gref=1 domid=32768", "grant gref=1 ro ro domid=1", "grant gref=1..2.. domid=1",
            "Complete id=1", "complete\u{A0}id=1", "complete id=１", "connect domid=1", "revoke gref=1 domid=1",
        ]
        for line in lines {
            #expect(Self.quick(line, after: noConnect) == nil, "read quickly: \(line)")
        }
    }

    /// Lines of whole tokens — the event's required keys, then good and bad
    /// values of every key, flags and strays — in random order and spacing:
    /// wherever the quick reader accepts, it agrees with the precise parser.
    @Test func randomLinesAgree() {
        var generator = RandomEvents(seed: testSeed(default: 0xA9_7EE))
        let events: [(keyword: String, required: [[String]])] = [
            ("request", [["id=5", "id=0x1f", "id=18446744073709551615"], ["op=read", "op=write", "op=discard", "op=7"],
                         ["sector=9", "sector=0xffffffffffffffff"]]),
            ("complete", [["id=5", "id=0x1F"]]),
            ("expect response", [["id=5"], ["status=okay", "status=error", "status=eopnotsupp"]]),
            ("grant", [["gref=1", "gref=1..4", "gref=0x10..0x20"]]),
        ]
        let extras = ["id=18446744073709551616", "id=", "id=-1", "op=flush", "op=barrier", "op=256", "op=0x05",
                      "sector=0x", "seg=1:0-7", "seg=0x10:255-0", "seg=1:0", "seg=1:256-0", "seg=4294967296:0-0",
                      "seg=2:1-2", "seg=3:0-0", "nr=3", "nr=256", "nr-sectors=2", "handle=65535", "handle=65536",
                      "vbd=7", "vbd=65536", "hold", "ro", "gref=4..1", "gref=1...2", "domid=3", "domid=0",
                      "domid=32768", "status=ok", "response", "persistent=1", "=", "x=1", "é", "id=1é"]
        let separators = [" ", " ", " ", "\t", " \r ", "  "]
        var states = [TraceState()]
        var connected = TraceState()
        connected.apply(.connect(ConnectEvent(domid: 9)))
        states.append(connected)
        var accepted = 0
        for index in 0..<20_000 {
            let event = generator.element(events)
            var words = event.required.map { generator.element($0) }
            for _ in 0..<Int.random(in: 0...5, using: &generator.rng) { words.append(generator.element(extras)) }
            words.shuffle(using: &generator.rng)
            var line = generator.element(["", " ", "\t"]) + event.keyword
            for word in words { line += generator.element(separators) + word }
            if Int.random(in: 0..<8, using: &generator.rng) == 0 { line += generator.element([" # note", "#", "\r"]) }
            if Self.expectAgreement(line, after: states[index % 2]) { accepted += 1 }
        }
        #expect(accepted > 1_000)
    }

    // MARK: Ring bytes

    /// Encoded requests, then a few bytes changed: the in-place check and
    /// the decode-and-re-encode check agree on every one.
    @Test func canonicalRingBytesAgreeWithReEncoding() {
        var generator = RandomEvents(seed: testSeed(default: 0xB17E5))
        var canonical = 0
        for index in 0..<20_000 {
            let ringProtocol = BlkifProtocol.allCases[index % BlkifProtocol.allCases.count]
            var bytes = ringProtocol.encode(generator.request(vbd: 0).blkifRequest)
            switch index % 4 {
            case 0: break
            case 1: bytes[Int.random(in: 0..<bytes.count, using: &generator.rng)] = generator.number()
            case 2:
                // Often a discard, with its area after nr_sectors touched or not.
                bytes[0] = generator.element([BlkifOperation.discard.rawValue, 0, 1, 6])
                if generator.coin() { bytes[Int.random(in: 0..<bytes.count, using: &generator.rng)] = generator.number() }
            default:
                bytes = (0..<bytes.count).map { _ in generator.coin() ? 0 : generator.number() }
            }
            let hold = generator.coin()
            let expected = RequestEvent(ringBytes: bytes, protocol: ringProtocol, vbd: 3, hold: hold)
            let found = bytes.withUnsafeBufferPointer {
                RequestEvent(canonicalRingBytes: $0, protocol: ringProtocol, vbd: 3, hold: hold)
            }
            #expect(found == expected, "\(ringProtocol) bytes \(bytes)")
            if found != nil { canonical += 1 }
        }
        #expect(canonical > 5_000)
    }

    @Test func wrongSizeIsNotARequest() {
        let bytes = [UInt8](repeating: 0, count: 111)
        #expect(bytes.withUnsafeBufferPointer { RequestEvent(canonicalRingBytes: $0, protocol: .native) } == nil)
    }
}
