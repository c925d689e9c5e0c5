import Blkif
import TestSupport
import Testing
import Trace

/// The canonical form of requests and raws that makes text → pcap → text the
/// identity, and `vbd=` on expectations (an extension of format version 1).
@Suite struct CanonicalRequestTests {
    static func printed(_ body: String) throws -> [String] {
        let events = try TextTraceReader.parseAll(text: "xenblk-trace 1\n" + body, file: "c.trace")
        var printer = TextTracePrinter()
        _ = printer.header()
        return events.map { printer.line(for: $0.kind) }
    }

    @Test func requestsPrintInTheirOneCanonicalForm() throws {
        #expect(try Self.printed("""
            request id=1 op=read sector=0 seg=5:0-7 seg=0:0-0
            request id=1 op=read sector=0 seg=5:0-7 nr=2
            request id=2 op=discard sector=8 nr-sectors=0
            request id=3 op=flush sector=0 seg=0:0-0 seg=0:0-0 nr=1
            request id=4 op=read sector=0 seg=0:0-0 seg=7:1-2
            """) == [
                "request id=1 op=read sector=0 seg=5:0-7 nr=2",
                "request id=1 op=read sector=0 seg=5:0-7 nr=2",
                "request id=2 op=discard sector=8",
                "request id=3 op=flush sector=0 nr=1",
                "request id=4 op=read sector=0 seg=0:0-0 seg=7:1-2",
            ])
    }

    @Test func aRawThatIsExactlyARequestPrintsAsThatRequest() throws {
        let request = RequestEvent(id: 9, operation: 1, sector: 24, segments: [BlkifSegment(gref: 3, firstSect: 0, lastSect: 7)])
        let native = BlkifProtocol.native.encode(request.blkifRequest)
        let x86_32 = BlkifProtocol.x86_32.encode(request.blkifRequest)
        let hex = { (bytes: [UInt8]) in bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
        var padded = native
        padded[5] = 1
        #expect(try Self.printed("""
            raw hex=\(hex(native))
            connect domid=1
            raw hex=\(hex(native)) hold
            raw hex=\(hex(padded))
            raw hex=\(hex(x86_32))
            connect domid=1 protocol=x86_32 vbd=2
            raw hex=\(hex(x86_32)) vbd=2
            raw hex=\(hex(native)) vbd=2
            disconnect vbd=2
            raw hex=\(hex(x86_32)) vbd=2
            """) == [
                "raw hex=\(hex(native))",                       // no connect: no protocol to read it in
                "connect domid=1",
                "request id=9 op=write sector=24 seg=3:0-7 hold",
                "raw hex=\(hex(padded))",                       // non-zero padding is kept
                "raw hex=\(hex(x86_32))",                       // 108 bytes on a native vbd
                "connect domid=1 protocol=x86_32 vbd=2",
                "request id=9 op=write sector=24 seg=3:0-7 vbd=2",
                "raw hex=\(hex(native)) vbd=2",
                "disconnect vbd=2",
                "request id=9 op=write sector=24 seg=3:0-7 vbd=2",   // the latest connect's protocol
            ])
    }

    @Test func expectationsCarryTheirVbd() throws {
        let events = try TextTraceReader.parseAll(text: """
            xenblk-trace 1
            expect response id=1 status=okay vbd=3
            expect persistent=2 vbd=0x10
            expect response id=1 status=okay vbd=0
            """, file: "v.trace")
        #expect(events.map(\.kind) == [
            .expect(.response(id: 1, status: .okay), vbd: 3),
            .expect(.persistent(count: 2), vbd: 16),
            .expect(.response(id: 1, status: .okay), vbd: 0),
        ])
        #expect(TextTracePrinter.render(events.map(\.kind)) == """
            xenblk-trace 1
            expect response id=1 status=okay vbd=3
            expect persistent=2 vbd=16
            expect response id=1 status=okay

            """)
    }

    @Test func ringBytesDecodeToTheCanonicalRequestOrNothing() {
        for ringProtocol in BlkifProtocol.allCases {
            let event = RequestEvent(id: 1, operation: 0, sector: 2, segments: [BlkifSegment(gref: 1, firstSect: 0, lastSect: 0)],
                                     nrSegments: 200, handle: 4)
            let bytes = ringProtocol.encode(event.blkifRequest)
            #expect(RequestEvent(ringBytes: bytes, protocol: ringProtocol, vbd: 3, hold: true)
                    == RequestEvent(id: 1, operation: 0, sector: 2, segments: event.segments, nrSegments: 200, handle: 4,
                                    vbd: 3, hold: true))
            #expect(RequestEvent(ringBytes: Array(bytes.dropLast()), protocol: ringProtocol) == nil)
            var bad = bytes
            bad[ringProtocol.request.segments + 7] = 1
            #expect(RequestEvent(ringBytes: bad, protocol: ringProtocol) == nil)
        }
    }
}
