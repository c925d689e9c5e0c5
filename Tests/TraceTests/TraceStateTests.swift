import Blkif
import TestSupport
import Testing
import Trace

/// The one trace state every reader, writer, printer, decoder and runner asks.
@Suite struct TraceStateTests {
    static let connect = TraceEventKind.connect(ConnectEvent(domid: 5, protocolName: .x86_32, vbd: 2))

    static func request(id: UInt64, vbd: UInt16 = 2, hold: Bool = true) -> TraceEventKind {
        .request(RequestEvent(id: id, operation: 0, sector: 0, vbd: vbd, hold: hold))
    }

    @Test func connectSetsProtocolDomainAndVbd() {
        let state = TraceState(after: [Self.connect])
        #expect(state.connectedVbds == [2])
        #expect(state.latestDomid == 5)
        #expect(state.ringProtocol(ofVbd: 2) == .x86_32)
        #expect(state.ringProtocol(ofVbd: 0) == nil)
        // Connected again: the same domain and ring is allowed, another is not.
        #expect(state.refusal(of: Self.connect) == nil)
        let otherRing = TraceEventKind.connect(ConnectEvent(domid: 5, protocolName: .x86_64, vbd: 2))
        let otherDomain = TraceEventKind.connect(ConnectEvent(domid: 6, protocolName: .x86_32, vbd: 2))
        for kind in [otherRing, otherDomain] {
            #expect(state.refusal(of: kind) == "vbd 2 is connected for domain 5 with protocol x86_32; "
                    + "a connect again must name the same domain and protocol (or disconnect it first)")
        }
    }

    @Test func connectedAgainKeepsTheHeldRequests() {
        var state = TraceState(after: [Self.connect, Self.request(id: 7), Self.request(id: 8)])
        state.apply(.connect(ConnectEvent(domid: 5, protocolName: .x86_32, persistent: false, sectors: 8, vbd: 2)))
        #expect(state.connected[2]?.held == [7, 8])
        #expect(state.refusal(of: .complete(id: 7, vbd: 2)) == nil)
    }

    @Test func disconnectKeepsTheLatestProtocol() {
        let state = TraceState(after: [Self.connect, .disconnect(vbd: 2)])
        #expect(state.connectedVbds.isEmpty)
        #expect(state.ringProtocol(ofVbd: 2) == .x86_32)
        #expect(state.latestDomid == 5)
        #expect(state.refusal(of: Self.request(id: 1)) == "vbd 2 is not connected")
        #expect(state.refusal(of: .complete(id: 1, vbd: 2)) == "vbd 2 is not connected")
        #expect(state.refusal(of: .disconnect(vbd: 2)) == "vbd 2 is not connected")
        #expect(state.refusal(of: .expect(.persistent(count: 0), vbd: 2)) == "vbd 2 is not connected")
        // Expected responses and violations need no connected vbd.
        #expect(state.refusal(of: .expect(.response(id: 1, status: .okay), vbd: 2)) == nil)
        #expect(state.refusal(of: .expect(.violation(.panic, backend: nil), vbd: 0)) == nil)
    }

    @Test func heldRequestsFillTheRingAndCompleteInAnyOrder() {
        var state = TraceState(after: [Self.connect])
        let slots = BlkifProtocol.x86_32.ringSize
        for id in 0..<UInt64(slots) {
            #expect(state.refusal(of: Self.request(id: id)) == nil)
            state.apply(Self.request(id: id))
        }
        #expect(state.connected[2]?.held.count == slots)
        #expect(!state.canSubmit(vbd: 2))
        #expect(state.holdingVbds == [2])
        #expect(state.refusal(of: Self.request(id: 99))
                == "more than \(slots) requests held on vbd 2: the ring has \(slots) slots")
        #expect(state.refusal(of: Self.request(id: 99, hold: false))
                == "the ring of vbd 2 is full: \(slots) requests are held; complete one first")
        #expect(state.refusal(of: .complete(id: 99, vbd: 2)) == "id 99 is not held on vbd 2")
        state.apply(.complete(id: 7, vbd: 2))
        #expect(state.canSubmit(vbd: 2))
        #expect(state.connected[2]?.held.contains(7) == false)
        // A request that is not held takes no slot.
        state.apply(Self.request(id: 100, hold: false))
        #expect(state.connected[2]?.held.count == slots - 1)
    }

    @Test func aRawIsHeldOnlyWhenItsBytesAreARequestOfTheRightSize() {
        var state = TraceState(after: [Self.connect])
        let size = BlkifProtocol.x86_32.request.size
        let short = TraceEventKind.raw(RawRequestEvent(bytes: [1, 2, 3], vbd: 2, hold: true))
        #expect(state.refusal(of: short) == "raw request is 3 bytes; protocol x86_32 takes \(size)")
        state.apply(short)
        #expect(state.connected[2]?.held == [])
        var bytes = [UInt8](repeating: 0, count: size)
        bytes[4] = 9   // x86_32 puts the id at offset 4
        let raw = TraceEventKind.raw(RawRequestEvent(bytes: bytes, vbd: 2, hold: true))
        #expect(state.refusal(of: raw) == nil)
        state.apply(raw)
        #expect(state.connected[2]?.held == [9])
    }

    @Test func rangesHaveABound() {
        let state = TraceState()
        let limit = TraceState.maxRangeLength
        #expect(state.refusal(of: .grant(GrantEvent(grefs: 0...UInt32(limit - 1), domid: 1))) == nil)
        #expect(state.refusal(of: .revoke(RevokeEvent(grefs: 0...UInt32(limit), domid: 1)))
                == "a range of \(limit + 1) grefs; at most \(limit) in one event")
    }

    /// The text reader keeps the state of exactly the events it read.
    @Test func theTextReaderKeepsTheStateOfWhatItRead() throws {
        var generator = RandomEvents(seed: testSeed(default: 0x57A7E))
        for _ in 0..<200 {
            let kinds = generator.textEvents(count: 30)
            var reader = TextTraceReader(text: TextTracePrinter.render(kinds), file: "t")
            var read: [TraceEventKind] = []
            while let event = try reader.next() { read.append(event.kind) }
            let expected = TraceState(after: read)
            #expect(reader.state.connected == expected.connected)
            #expect(reader.state.latestDomid == expected.latestDomid)
        }
    }

    @Test func renamingAVbdMovesExactlyTheEventsThatHaveOne() {
        var generator = RandomEvents(seed: testSeed(default: 0xB0D))
        for kind in generator.textEvents(count: 2000) {
            let moved = kind.onVbd { _ in 9 }
            switch kind {
            case .frontendKey, .grant, .revoke, .fail, .write, .tick, .parameter:
                #expect(moved == kind)
                #expect(kind.vbd == 0)
            case .expect(.violation, _):
                #expect(moved.vbd == 0)   // a violation concerns the whole trace
            default:
                #expect(moved.vbd == 9)
            }
        }
    }
}
