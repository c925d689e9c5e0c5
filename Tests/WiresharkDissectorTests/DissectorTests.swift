import Blkif
import Foundation
import Harness
import TestSupport
import Testing
import Trace
import TracePcap

/// The Wireshark dissector (tools/wireshark/xenblk.lua) decodes what the reader decodes.
@Suite struct DissectorTests {
    static let script = Repository.root.appendingPathComponent("tools/wireshark/xenblk.lua").path
    static let fields = ["frame.number", "xenblk.kind", "xenblk.vbd", "xenblk.control", "xenblk.req.op",
                         "xenblk.req.id", "xenblk.req.sector", "xenblk.req.nr_segments", "xenblk.req.nr_sectors",
                         "xenblk.seg.gref", "xenblk.seg.first_sect", "xenblk.seg.last_sect", "xenblk.hold",
                         "xenblk.rsp.id", "xenblk.rsp.status", "xenblk.rsp.status_name", "xenblk.protocol"]

    /// tshark's rows, one per packet, split into the fields above.
    static func tshark(_ path: String) throws -> [[String]] {
        var arguments = ["-r", path, "-X", "lua_script:" + script, "-T", "fields",
                         "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
        for field in fields { arguments += ["-e", field] }
        let run = try runProgram(executable("tshark")!, arguments)
        let (output, status) = (run.standardOutput, run.status)
        #expect(status == 0)
        return output.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.isEmpty }
            .map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }

    /// What tshark must show for each event, in the same columns.
    static func expectedRow(_ number: Int, _ kind: TraceEventKind, line: String, ringProtocol: BlkifProtocol?) -> [String] {
        var row = Array(repeating: "", count: fields.count)
        row[0] = "\(number)"
        let name = ringProtocol?.rawValue ?? ""
        switch kind {
        case .request, .raw:
            let (request, vbd, hold): (BlkifRequest, UInt16, Bool)
            if case let .request(event) = kind {
                (request, vbd, hold) = (event.blkifRequest, event.vbd, event.hold)
            } else if case let .raw(raw) = kind, let ringProtocol,
                      let decoded = try? ringProtocol.decodeRequest(raw.bytes) {
                (request, vbd, hold) = (decoded, raw.vbd, raw.hold)
            } else {
                return row
            }
            row[1] = "2"
            row[2] = "\(vbd)"
            row[4] = "\(request.operation)"
            row[5] = "\(request.id)"
            row[6] = "\(request.sectorNumber)"
            row[7] = "\(request.nrSegments)"
            if request.isDiscard {
                row[8] = "\(request.discardSectors)"
            } else {
                // The dissector shows the slots the backend looks at (nr_segments, at most 11)
                // and any non-zero slot after them: the slots Blkif's decoder keeps.
                let bytes = BlkifProtocol.native.encode(request)
                let segments = (try? BlkifProtocol.native.decodeRequest(bytes).segments) ?? []
                row[9] = segments.map { "\($0.gref)" }.joined(separator: ",")
                row[10] = segments.map { "\($0.firstSect)" }.joined(separator: ",")
                row[11] = segments.map { "\($0.lastSect)" }.joined(separator: ",")
            }
            row[12] = hold ? "1" : "0"
            row[16] = name
        case let .expect(.response(id, status), vbd):
            row[1] = "3"
            row[2] = "\(vbd)"
            row[13] = "\(id)"
            row[14] = "\(status.rawValue)"
            row[15] = status.traceName
            row[16] = name
        default:
            row[1] = "1"
            row[2] = "\(PcapTraceReaderVbd.of(kind))"
            row[3] = line
        }
        return row
    }

    /// Every request form and every response status, for each protocol (one vbd each, so one tshark run).
    static func trace() -> String {
        var text = "xenblk-trace 1\n"
        for (vbd, ringProtocol) in BlkifProtocol.allCases.enumerated() {
            text += """
                connect domid=5 protocol=\(ringProtocol.rawValue) persistent=1 discard=1 vbd=\(vbd)
                grant gref=10..20
                request id=1 op=write sector=4096 seg=10:0-7 seg=11:2-5 seg=4294967295:1-7 vbd=\(vbd)
                expect response id=1 status=okay vbd=\(vbd)
                request id=18446744073709551615 op=read sector=18446744073709551615 seg=12:0-7 vbd=\(vbd) hold
                complete id=18446744073709551615 vbd=\(vbd)
                expect response id=18446744073709551615 status=error vbd=\(vbd)
                request id=3 op=discard sector=64 nr-sectors=128 vbd=\(vbd)
                expect response id=3 status=okay vbd=\(vbd)
                request id=4 op=flush sector=0 vbd=\(vbd)
                expect response id=4 status=okay vbd=\(vbd)
                request id=5 op=barrier sector=0 nr=3 handle=7 vbd=\(vbd)
                expect response id=5 status=eopnotsupp vbd=\(vbd)
                request id=6 op=read sector=8 seg=10:0-7 seg=11:0-7 seg=12:0-7 seg=13:0-7 seg=14:0-7 seg=15:0-7 seg=16:0-7 seg=17:0-7 seg=18:0-7 seg=19:0-7 seg=20:0-7 vbd=\(vbd)
                expect response id=6 status=okay vbd=\(vbd)
                raw hex=\(String(repeating: "01", count: ringProtocol.request.size)) vbd=\(vbd)
                expect persistent=11 vbd=\(vbd)

                """
        }
        return text
    }

    @Test(.enabled(if: executable("tshark") != nil)) func tsharkDecodesAllThreeProtocols() throws {
        let scratch = try Scratch("tshark")
        defer { scratch.cleanUp() }
        let kinds = try TextTraceReader.parseAll(text: Self.trace(), file: "d.trace").map(\.kind)
        let path = scratch.path("three.pcap")
        try writePcap(kinds, to: path)
        let rows = try Self.tshark(path)
        #expect(rows.count == kinds.count + 1)
        #expect(rows.first.map { Array($0[0...3]) } == ["1", "1", "0", "xenblk-trace 1"])
        var printer = TextTracePrinter()
        _ = printer.header()
        var protocols: [UInt16: BlkifProtocol] = [:]
        for (index, kind) in kinds.enumerated() where index + 1 < rows.count {
            let line = printer.line(for: kind)
            if case let .connect(connect) = kind { protocols[connect.vbd] = connect.protocolName }
            let vbd = UInt16(rows[index + 1][2]) ?? 0
            let expected = Self.expectedRow(index + 2, kind, line: line, ringProtocol: protocols[vbd])
            #expect(rows[index + 1] == expected, "packet \(index + 2)")
        }
        // The raw (non-canonical: padding 01) requests decode too, field by field.
        let raws = rows.filter { $0[1] == "2" && $0[5] == "72340172838076673" }
        #expect(raws.count == 3)
    }

    /// Version 2: the indirect requests (flags bit 1, descriptors after the
    /// slot) in each protocol, and the new control lines. The Info column of
    /// every packet but the responses is the event's canonical line.
    @Test(.enabled(if: executable("tshark") != nil)) func tsharkDecodesVersionTwo() throws {
        let scratch = try Scratch("tshark2")
        defer { scratch.cleanUp() }
        var text = "xenblk-trace 2\nparam max_persistent_grants=64\ntick s=61\n"
        for (vbd, ringProtocol) in BlkifProtocol.allCases.enumerated() {
            text += """
                connect domid=5 protocol=\(ringProtocol.rawValue) persistent=1 vbd=\(vbd)
                grant gref=10..20
                write gref=20 offset=12 hex=00ff after-reads=2
                indirect id=\(vbd + 1) op=write sector=8 seg=10:0-7 seg=11:2-5 seg=4294967295:1-9 page=20 handle=3 vbd=\(vbd) hold
                indirect id=9 op=read sector=0 nr=300 page=0 page=7 vbd=\(vbd)
                complete id=\(vbd + 1) vbd=\(vbd)

                """
        }
        let kinds = try TextTraceReader.parseAll(text: text, file: "v2.trace").map(\.kind)
        let path = scratch.path("v2.pcap")
        try writePcap(kinds, to: path)
        let run = try runProgram(executable("tshark")!, ["-r", path, "-X", "lua_script:" + Self.script, "-T", "fields",
                                                         "-e", "xenblk.version", "-e", "_ws.col.Info",
                                                         "-e", "xenblk.req.page", "-e", "xenblk.protocol"])
        #expect(run.status == 0)
        let rows = run.standardOutput.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        #expect(rows.count == kinds.count + 1)
        #expect(rows.allSatisfy { $0.first == "2" })
        var printer = TextTracePrinter()
        _ = printer.header(version: 2)
        for (index, kind) in kinds.enumerated() where index + 1 < rows.count {
            #expect(rows[index + 1][1] == printer.line(for: kind), "packet \(index + 2)")
            if case let .indirect(request) = kind {
                #expect(rows[index + 1][2] == request.pages.map(String.init).joined(separator: ","))
                #expect(rows[index + 1][3] == BlkifProtocol.allCases[Int(request.vbd)].rawValue)
            }
        }
    }

    /// The dissector on a committed recording: every request and response as the reader sees them.
    @Test(.enabled(if: executable("tshark") != nil)) func tsharkDecodesARecording() throws {
        let path = Repository.root.appendingPathComponent("traces/recorded/persistent-qd8-x86_32.pcap").path
        let events = try PcapTraceReader.readAll(path: path)
        let rows = try Self.tshark(path)
        #expect(rows.count == events.count + 1)
        var printer = TextTracePrinter()
        _ = printer.header()
        for (event, row) in zip(events, rows.dropFirst()) {
            let line = printer.line(for: event.kind)
            guard case let .packet(number) = event.position else { continue }
            #expect(row == Self.expectedRow(number, event.kind, line: line, ringProtocol: .x86_32), "packet \(number)")
        }
    }
}

/// The vbd a control packet's header carries.
enum PcapTraceReaderVbd {
    static func of(_ kind: TraceEventKind) -> UInt16 {
        switch kind {
        case let .connect(connect): connect.vbd
        case let .complete(_, vbd), let .disconnect(vbd): vbd
        case let .expect(.persistent, vbd): vbd
        default: 0
        }
    }
}
