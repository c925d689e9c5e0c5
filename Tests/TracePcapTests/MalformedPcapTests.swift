import Blkif
import Foundation
import Harness
import TestSupport
import Testing
import Trace
import TracePcap

/// Every malformed pcap gives one line naming the file and the packet.
@Suite struct MalformedPcapTests {
    /// The error of a hand-made file, with its path replaced by `m.pcap`.
    static func error(of file: [UInt8], name: String = "m.pcap") throws -> String {
        let scratch = try Scratch("malformed")
        defer { scratch.cleanUp() }
        let path = try scratch.write(name, file)
        let message = readError(path).replacingOccurrences(of: path, with: name)
        // The harness reports the same error when replaying the file.
        let report = TraceRunner.replay(.file(path: path), variant: .fixed)
        #expect(report.verdict == (message.isEmpty ? .pass : .error))
        #expect(report.traceError?.description.replacingOccurrences(of: path, with: name) ?? "" == message)
        #expect(!message.contains("\n"))
        return message
    }

    static func error(packets: [[UInt8]]) throws -> String {
        try error(of: classicPcap(packets: packets))
    }

    static let connect = control("connect domid=1")
    static let connect32 = control("connect domid=1 protocol=x86_32")
    static func requestPacket(_ ringProtocol: BlkifProtocol = .native, vbd: UInt16 = 0, flags: UInt8 = 0) -> [UInt8] {
        let request = BlkifRequest(operation: 0, id: 1, sectorNumber: 0, segments: [BlkifSegment(gref: 1, firstSect: 0, lastSect: 7)])
        return packet(kind: 2, vbd: vbd, [flags] + ringProtocol.encode(request))
    }

    @Test func aWellFormedFileReads() throws {
        #expect(try Self.error(packets: [headerPacket, Self.connect, Self.requestPacket()]) == "")
    }

    @Test func anotherLinkType() throws {
        #expect(try Self.error(of: classicPcap(linkType: 1, packets: [headerPacket]))
                == "m.pcap: packet 0: link type 1 (EN10MB); expected LINKTYPE_USER0 (147), the link type of xenblk traces")
        #expect(try Self.error(of: pcapng(linkType: 228, packets: [headerPacket]), name: "m.pcapng")
                == "m.pcapng: packet 0: link type 228 (IPV4); expected LINKTYPE_USER0 (147), the link type of xenblk traces")
    }

    @Test func notAPcapAtAll() throws {
        #expect(try Self.error(of: Array("xenblk-trace 1\nconnect domid=1\n".utf8))
                == "m.pcap: packet 0: cannot read the pcap: unknown file format; expected a readable pcap or pcapng file")
        #expect(try Self.error(of: [])
                == "m.pcap: packet 0: cannot read the pcap: truncated dump file; tried to read 4 file header bytes, only got 0; expected a readable pcap or pcapng file")
        let missing = readError("/nonexistent/x.pcap")
        #expect(missing.hasPrefix("/nonexistent/x.pcap: packet 0: cannot read the pcap: "))
        #expect(missing.hasSuffix("No such file or directory; expected a readable pcap or pcapng file"))
    }

    @Test func truncatedFile() throws {
        let whole = classicPcap(packets: [headerPacket, Self.connect, Self.requestPacket()])
        // Inside the global header.
        #expect(try Self.error(of: Array(whole.prefix(10)))
                == "m.pcap: packet 0: cannot read the pcap: truncated dump file; tried to read 24 file header bytes, only got 6; expected a readable pcap or pcapng file")
        // Inside the third packet's data, and inside its record header.
        #expect(try Self.error(of: Array(whole.dropLast(50)))
                == "m.pcap: packet 3: cannot read the packet: truncated dump file; tried to read 117 captured bytes, only got 67; expected a whole packet record")
        #expect(try Self.error(of: Array(whole.dropLast(117 + 6)))
                == "m.pcap: packet 3: cannot read the packet: truncated dump file; tried to read 16 header bytes, only got 10; expected a whole packet record")
        // A pcapng cut inside a block.
        #expect(try Self.error(of: Array(pcapng(packets: [headerPacket, Self.connect]).dropLast(8)), name: "m.pcapng")
                .hasPrefix("m.pcapng: packet 2: cannot read the packet: truncated pcapng dump file"))
    }

    @Test func shortPackets() throws {
        #expect(try Self.error(packets: [headerPacket, [1, 1]])
                == "m.pcap: packet 2: short packet of 2 bytes; expected at least the 4-byte header (kind, version, vbd)")
        #expect(try Self.error(packets: [headerPacket, Self.connect, packet(kind: 2, [])])
                == "m.pcap: packet 3: short packet: a ring-request packet without its flags byte; expected flags and the request's ring bytes")
        #expect(try Self.error(packets: [headerPacket, Self.connect, Array(Self.requestPacket().dropLast(4))])
                == "m.pcap: packet 3: short packet: a ring request of 108 bytes on vbd 0; expected the 112 bytes of a native request")
        #expect(try Self.error(packets: [headerPacket, Self.connect32, Self.requestPacket(.native)])
                == "m.pcap: packet 3: long packet: a ring request of 112 bytes on vbd 0; expected the 108 bytes of a x86_32 request")
        #expect(try Self.error(packets: [headerPacket, packet(kind: 3, [0, 0, 0])])
                == "m.pcap: packet 2: short packet: a ring response of 3 bytes on vbd 0; expected the 16 bytes of a native response")
        // Captured with a snapshot length below the packet's.
        #expect(try Self.error(of: classicPcap(packets: [headerPacket, Self.connect], originalLengths: [1: 500]))
                == "m.pcap: packet 2: the packet was captured short (19 of 500 bytes); expected whole packets")
    }

    @Test func unknownKindOrVersion() throws {
        #expect(try Self.error(packets: [headerPacket, packet(kind: 9, [1, 2])])
                == "m.pcap: packet 2: unknown packet kind 9; expected 1 (control), 2 (ring request) or 3 (ring response)")
        #expect(try Self.error(packets: [headerPacket, packet(kind: 1, version: 2, Array("connect domid=1".utf8))])
                == "m.pcap: packet 2: packet format version 2 in a trace of version 1; expected 1, the version of its header packet")
        #expect(try Self.error(packets: [packet(kind: 1, version: 2, Array("xenblk-trace 2".utf8)),
                                         packet(kind: 1, version: 1, Array("connect domid=1".utf8))])
                == "m.pcap: packet 2: packet format version 1 in a trace of version 2; expected 2, the version of its header packet")
        #expect(try Self.error(packets: [packet(kind: 1, version: 0, Array("xenblk-trace 1".utf8))])
                == "m.pcap: packet 1: unknown packet format version 0; expected 1 to 2")
        #expect(try Self.error(packets: [packet(kind: 1, version: 3, Array("xenblk-trace 3".utf8))])
                == "m.pcap: packet 1: unknown packet format version 3; expected 1 to 2")
        #expect(try Self.error(packets: [control("xenblk-trace 2")])
                == "m.pcap: packet 1: trace version '2' in a header packet of format version 1; expected 'xenblk-trace 1'")
        #expect(try Self.error(packets: [headerPacket, control("tick ms=1")])
                == "m.pcap: packet 2: in the control text at column 1: 'tick' is an event of trace format version 2, and this trace's header says version 1; expected the header 'xenblk-trace 2' to use it")
    }

    @Test func theHeaderPacket() throws {
        #expect(try Self.error(packets: [])
                == "m.pcap: packet 1: the trace ends before its header; expected a control packet 'xenblk-trace 1' first")
        #expect(try Self.error(packets: [Self.connect])
                == "m.pcap: packet 1: control text 'connect domid=1' where the header belongs; expected 'xenblk-trace 1' first")
        #expect(try Self.error(packets: [Self.requestPacket()])
                == "m.pcap: packet 1: a kind-2 packet where the header belongs; expected a control packet 'xenblk-trace 1' first")
        #expect(try Self.error(packets: [control("xenblk-trace 1", vbd: 4)])
                == "m.pcap: packet 1: the header packet names vbd 4; expected vbd 0")
    }

    @Test func requestBeforeConnect() throws {
        #expect(try Self.error(packets: [headerPacket, Self.requestPacket()])
                == "m.pcap: packet 2: a ring request on vbd 0 before its connect; expected a connect control packet for vbd 0 first")
        #expect(try Self.error(packets: [headerPacket, Self.connect, control("grant gref=1"), Self.requestPacket(vbd: 3)])
                == "m.pcap: packet 4: a ring request on vbd 3 before its connect; expected a connect control packet for vbd 3 first")
    }

    @Test func badFlagsAndStatuses() throws {
        #expect(try Self.error(packets: [headerPacket, Self.connect, Self.requestPacket(flags: 0x81)])
                == "m.pcap: packet 3: unknown flags 0x81 in a ring-request packet of version 1; expected 0 or 1 (bit 0: hold)")
        // The indirect flag exists from version 2 on.
        #expect(try Self.error(packets: [headerPacket, Self.connect, Self.requestPacket(flags: 0x02)])
                == "m.pcap: packet 3: unknown flags 0x2 in a ring-request packet of version 1; expected 0 or 1 (bit 0: hold)")
        let response = BlkifProtocol.native.encode(BlkifResponse(id: 1, operation: 0, status: 5))
        #expect(try Self.error(packets: [headerPacket, packet(kind: 3, response)])
                == "m.pcap: packet 2: response status 5 is not a BLKIF_RSP; expected 0 (okay), -1 (error) or -2 (eopnotsupp)")
    }

    @Test func badControlText() throws {
        #expect(try Self.error(packets: [headerPacket, control("connect domid=1 colour=red")])
                == "m.pcap: packet 2: in the control text at column 17: unknown key 'colour' for 'connect'; expected one of domid, protocol, persistent, backend-persistent, max-persistent, sectors, flush, discard, vbd, hotplug")
        #expect(try Self.error(packets: [headerPacket, packet(kind: 1, [0x63, 0xFF])])
                == "m.pcap: packet 2: control text that is not UTF-8; expected an event's canonical text line")
        #expect(try Self.error(packets: [headerPacket, control("  ")])
                == "m.pcap: packet 2: empty control packet; expected an event's canonical text line")
        #expect(try Self.error(packets: [headerPacket, control("connect domid=1\ndisconnect")])
                == "m.pcap: packet 2: control text with a line break in it; expected one event line without comment or newline")
        #expect(try Self.error(packets: [headerPacket, control("connect domid=1 # c")])
                == "m.pcap: packet 2: control text with a '#' in it; expected one event line without comment or newline")
        #expect(try Self.error(packets: [headerPacket, Self.connect, control("request id=1 op=read sector=0")])
                == "m.pcap: packet 3: a ring request written as control text; expected it as a kind-2 packet of ring bytes")
        #expect(try Self.error(packets: [headerPacket, control("expect response id=1 status=okay")])
                == "m.pcap: packet 2: an expected response written as control text; expected it as a kind-3 packet of ring bytes")
        #expect(try Self.error(packets: [headerPacket, control("connect domid=1 vbd=2", vbd: 3)])
                == "m.pcap: packet 2: the packet header names vbd 3 but its text vbd 2; expected the same vbd")
        #expect(try Self.error(packets: [headerPacket, control("grant gref=1")])
                == "m.pcap: packet 2: in the control text at column 1: 'grant' before any connect needs its domain; expected domid=1..32767")
    }

    /// A runtime error of a valid pcap (complete of an id not held) names its packet too.
    @Test func replayErrorsNamePackets() throws {
        let scratch = try Scratch("runtime")
        defer { scratch.cleanUp() }
        let path = try scratch.write("r.pcap", classicPcap(packets: [headerPacket, Self.connect, control("complete id=9")]))
        let report = TraceRunner.replay(.file(path: path), variant: .fixed)
        #expect(report.traceError?.description == "\(path): packet 3: id 9 is not held on vbd 0")
    }
}
