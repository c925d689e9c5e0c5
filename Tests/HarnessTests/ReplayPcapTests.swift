import Backend
import Foundation
import Harness
import TestSupport
import Testing
import Trace
import TracePcap

/// Replaying a pcap gives the report its text gives, with packet numbers for lines.
@Suite struct ReplayPcapTests {
    static let text = """
        xenblk-trace 1
        connect domid=3 persistent=1
        grant gref=1..4
        request id=1 op=write sector=0 seg=1:0-7 seg=2:0-7
        expect response id=1 status=okay
        request id=2 op=read sector=0 seg=3:0-7 seg=4:0-7 hold
        complete id=2
        expect response id=2 status=error
        expect persistent=9
        connect domid=3 protocol=x86_32 vbd=1
        grant gref=9
        request id=3 op=read sector=8 seg=9:0-7 vbd=1
        expect response id=3 status=okay vbd=1
        expect persistent=1 vbd=1
        disconnect vbd=1
        disconnect

        """

    @Test func textAndPcapReplayAlike() throws {
        let scratch = try Scratch("replay")
        defer { scratch.cleanUp() }
        let textPath = try scratch.write("t.trace", Array(Self.text.utf8))
        let pcapPath = scratch.path("t.pcap")
        try writePcap(try TextTraceReader.parseAll(text: Self.text, file: "t").map(\.kind), to: pcapPath)
        for variant in [BackendVariant.fixed, try BackendVariant(name: "seed")] {
            let fromText = TraceRunner.replay(.file(path: textPath), variant: variant)
            let fromPcap = TraceRunner.replay(.file(path: pcapPath), variant: variant)
            #expect(fromText.statistics == fromPcap.statistics)
            #expect(fromText.verdict == fromPcap.verdict)
            // The two wrong expectations, at lines 8 and 9 = packets 8 and 9 (header = line 1 = packet 1).
            let linePositions = fromText.violations.map(\.violation.position)
            let packetPositions = fromPcap.violations.map(\.violation.position)
            #expect(linePositions.map { if case let .line(line, _) = $0 { line } else { -1 } }
                    == packetPositions.map { if case let .packet(number) = $0 { number } else { -2 } })
        }
        let fixed = TraceRunner.replay(.file(path: pcapPath), variant: .fixed)
        #expect(fixed.violations.map(\.violation.check) == [.expect, .expect])
        #expect(fixed.violations.map(\.violation.seen) == ["okay", "persistent=4"])
        #expect(fixed.violations.map(\.violation.position) == [.packet(8), .packet(9)])
    }

    @Test func openPicksTheReaderByExtension() throws {
        let scratch = try Scratch("open")
        defer { scratch.cleanUp() }
        #expect(TraceFile.isPcap(path: "a/b.pcap") && TraceFile.isPcap(path: "B.PCAPNG"))
        #expect(!TraceFile.isPcap(path: "a.trace") && !TraceFile.isPcap(path: "pcap"))
        // A text file named .pcap is read as pcap, and refused as such.
        let path = try scratch.write("text.pcap", Array(Self.text.utf8))
        #expect(throws: TraceError.self) { _ = try TraceFile.open(path: path) }
    }

    /// The reader streams: it hands out early events before meeting a bad packet late in the file.
    @Test func theReaderStreams() throws {
        let scratch = try Scratch("stream")
        defer { scratch.cleanUp() }
        var packets = [headerPacket, control("connect domid=1")]
        for _ in 0..<5_000 { packets.append(control("grant gref=1")) }
        packets.append(packet(kind: 7, []))
        let path = try scratch.write("s.pcap", classicPcap(packets: packets))
        let reader = try PcapTraceReader(path: path)
        var count = 0
        while count < 5_001, try reader.next() != nil { count += 1 }
        #expect(count == 5_001)
        #expect(throws: TraceError(file: path, position: .packet(5_003),
                                   message: "unknown packet kind 7; expected 1 (control), 2 (ring request) or 3 (ring response)")) {
            _ = try reader.next()
        }
        // Errors are final.
        #expect(throws: TraceError.self) { _ = try reader.next() }
    }
}
