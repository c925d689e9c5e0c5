import Foundation
import Harness
import TestSupport
import Testing
import Trace
import TracePcap

/// pcapng is read through libpcap like pcap: same events, same packet numbers.
@Suite struct PcapngTests {
    static let packets: [[UInt8]] = {
        let request = BlkifRequestBytes.read
        return [headerPacket, control("connect domid=4 persistent=1"), control("grant gref=1..2"),
                packet(kind: 2, [1] + request), control("complete id=7"),
                packet(kind: 3, [7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), control("disconnect")]
    }()

    @Test func aHandMadePcapngReadsLikeItsPcap() throws {
        let scratch = try Scratch("pcapng")
        defer { scratch.cleanUp() }
        let ng = try scratch.write("t.pcapng", pcapng(packets: Self.packets))
        let classic = try scratch.write("t.pcap", classicPcap(packets: Self.packets))
        let fromNg = try PcapTraceReader.readAll(path: ng)
        #expect(fromNg == (try PcapTraceReader.readAll(path: classic)))
        #expect(fromNg.map(\.position) == (2...7).map { .packet($0) })
        #expect(TextTracePrinter.render(fromNg.map(\.kind)) == """
            xenblk-trace 1
            connect domid=4 persistent=1
            grant gref=1..2
            request id=7 op=read sector=0 seg=1:0-7 seg=2:0-7 hold
            complete id=7
            expect response id=7 status=okay
            disconnect

            """)
        // The harness opens .pcapng by extension and replays it.
        let report = TraceRunner.replay(.file(path: ng), variant: .fixed)
        #expect(report.verdict == .pass, "\(report.violations) \(String(describing: report.traceError))")
        #expect(report.statistics.requests == 1)
    }

    /// editcap (from Wireshark) turns our pcap into a real-world pcapng, when it is installed.
    @Test(.enabled(if: executable("editcap") != nil)) func editcapsPcapngReads() throws {
        let scratch = try Scratch("editcap")
        defer { scratch.cleanUp() }
        let classic = try scratch.write("t.pcap", classicPcap(packets: Self.packets))
        let ng = scratch.path("t.pcapng")
        let status = try runProgram(executable("editcap")!, ["-F", "pcapng", classic, ng]).status
        #expect(status == 0)
        #expect(try PcapTraceReader.readAll(path: ng) == (try PcapTraceReader.readAll(path: classic)))
    }
}

enum BlkifRequestBytes {
    /// `request id=7 op=read sector=0 seg=1:0-7 seg=2:0-7` in the native ABI.
    static var read: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 112)
        bytes[1] = 2
        bytes[8] = 7
        bytes[24] = 1
        bytes[29] = 7
        bytes[32] = 2
        bytes[37] = 7
        return bytes
    }
}
