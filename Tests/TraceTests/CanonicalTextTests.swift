import Blkif
import TestSupport
import Testing
import Trace

/// Canonical text is a fixed point: parsing a canonical line and printing the
/// event gives the line back, character for character.
@Suite struct CanonicalTextTests {
    /// Every event and every option, each written the one canonical way.
    /// Order matters: grants before the first connect must name their domain.
    static let canonical = """
        frontend-key feature-persistent 1
        frontend-key device/vbd/51712/mode w@x_y=z
        grant gref=1 domid=3
        revoke gref=1..2 domid=3
        connect domid=7
        grant gref=5
        grant gref=0..4294967295 ro domid=9
        revoke gref=5
        revoke gref=3..4 domid=32767
        connect domid=32767 protocol=x86_32 persistent=0 backend-persistent=0 max-persistent=0 sectors=0 flush=0 discard=1 vbd=65535
        grant gref=6 ro
        connect domid=1 protocol=x86_64 persistent=1 max-persistent=352 sectors=18446744073709551615
        connect domid=2 max-persistent=9223372036854775807 sectors=1
        fail map gref=5 status=general_error
        fail map gref=4294967295 times=3 status=no_space
        fail map gref=0 times=9223372036854775807 status=bad_gntref
        fail map nth=2 status=eagain
        fail alloc nth=1
        fail hypercall nth=9223372036854775807
        request id=1 op=read sector=0 seg=5:0-7 seg=5:0-7
        request id=18446744073709551615 op=write sector=18446744073709551615 seg=4294967295:255-255 nr=255 handle=65535 vbd=65535 hold
        request id=2 op=barrier sector=0
        request id=3 op=flush sector=0 nr=3
        request id=4 op=discard sector=8 nr-sectors=16
        request id=5 op=discard sector=8 nr=1
        request id=6 op=4 sector=0 seg=1:9-8 nr=0
        request id=7 op=255 sector=3 seg=1:0-0 seg=2:0-1 seg=3:0-2 seg=4:0-3 seg=5:0-4 seg=6:0-5 seg=7:0-6 seg=8:0-7 seg=9:1-7 seg=10:2-7 seg=11:3-7
        request id=8 op=6 sector=0 handle=1 hold
        raw hex=00ff vbd=1 hold
        raw hex=0123456789abcdef
        complete id=1
        complete id=2 vbd=3
        expect response id=1 status=okay
        expect response id=2 status=error
        expect response id=18446744073709551615 status=eopnotsupp
        expect persistent=0
        expect persistent=352
        expect violation tree-count
        expect violation use-after-free backend=seed
        expect violation panic backend=fixed+quirk_1-a
        disconnect
        disconnect vbd=1
        """

    @Test func parseThenPrintIsIdentity() throws {
        let lines = Self.canonical.split(separator: "\n").map(String.init)
        let text = "xenblk-trace 1\n" + lines.joined(separator: "\n") + "\n"
        let events = try TextTraceReader.parseAll(text: text, file: "canonical.trace")
        #expect(events.count == lines.count)
        var printer = TextTracePrinter()
        #expect(printer.header() == "xenblk-trace 1")
        for (event, line) in zip(events, lines) {
            #expect(printer.line(for: event.kind) == line)
        }
        #expect(TextTracePrinter.render(events.map(\.kind)) == text)
    }

    @Test func everyCheckIdPrintsAndParses() throws {
        for check in CheckID.allCases {
            let line = "expect violation \(check.rawValue)"
            let events = try TextTraceReader.parseAll(text: "xenblk-trace 1\n\(line)\n", file: "c.trace")
            #expect(events.map(\.kind) == [.expect(.violation(check, backend: nil), vbd: 0)])
            var printer = TextTracePrinter()
            #expect(printer.line(for: events[0].kind) == line)
        }
    }

    @Test func checkIdsAreThoseOfTheDesign() {
        #expect(CheckID.allCases.map(\.rawValue) == [
            "tree-count", "tree-order", "tree-balance", "tree-contents", "tree-mapping", "grant-limit",
            "map-ops", "unmap-bitmap", "unmap-ops", "request-leak", "response", "data", "access-unmapped",
            "unmap-in-use", "teardown", "use-after-free", "double-free", "panic", "negotiation",
            "overflow-alert", "expect", "response-slot", "host-leak", "double-fetch", "grant-states",
        ])
    }

    /// Hex, numbered ops and statuses, tabs, comments, explicit defaults and
    /// spelled-out nr all come out in the one canonical form.
    @Test func nonCanonicalInputPrintsCanonically() throws {
        let pairs: [(String, String)] = [
            ("connect\tdomid=0x7   protocol=native backend-persistent=1 flush=1 discard=0 sectors=2097152 vbd=0 # c",
             "connect domid=7"),
            ("grant ro gref=0x10..0x11 domid=7", "grant gref=16..17 ro"),
            ("grant gref=4..4", "grant gref=4"),
            ("fail map status=-1 gref=5 times=1", "fail map gref=5 status=general_error"),
            ("fail map nth=0x2 status=-13", "fail map nth=2 status=no_space"),
            ("request hold sector=0x0 op=1 id=0xFF seg=0x10:0x0-0x7 nr=1 handle=0 vbd=0",
             "request id=255 op=write sector=0 seg=16:0-7 hold"),
            ("request id=1 op=0 sector=0", "request id=1 op=read sector=0"),
            ("request id=1 op=5 sector=0 nr=0", "request id=1 op=discard sector=0"),
            ("raw hex=ABcd00", "raw hex=abcd00"),
            ("complete vbd=0 id=0x1", "complete id=1"),
            ("expect persistent=0x10", "expect persistent=16"),
            ("expect violation panic", "expect violation panic"),
            ("disconnect vbd=0", "disconnect"),
        ]
        for (input, canonical) in pairs {
            var reader = TextTraceReader(text: "xenblk-trace 1\nconnect domid=7\n\(input)\n", file: "n.trace")
            let connect = try #require(try reader.next())
            let event = try #require(try reader.next())
            var printer = TextTracePrinter()
            _ = printer.line(for: connect.kind)
            #expect(printer.line(for: event.kind) == canonical, "from \(input)")
        }
    }

    @Test func grantDomidDefaultsToTheLatestConnect() throws {
        let text = """
            xenblk-trace 1
            connect domid=7
            grant gref=1
            disconnect
            connect domid=8 vbd=1
            grant gref=2
            revoke gref=3
            grant gref=4 domid=7
            """
        let kinds = try TextTraceReader.parseAll(text: text, file: "d.trace").map(\.kind)
        #expect(kinds[1] == .grant(GrantEvent(grefs: 1...1, readOnly: false, domid: 7)))
        #expect(kinds[4] == .grant(GrantEvent(grefs: 2...2, readOnly: false, domid: 8)))
        #expect(kinds[5] == .revoke(RevokeEvent(grefs: 3...3, domid: 8)))
        #expect(kinds[6] == .grant(GrantEvent(grefs: 4...4, readOnly: false, domid: 7)))
        #expect(TextTracePrinter.render(kinds) == text + "\n")
    }

    @Test func positionsNameLineAndKeywordColumn() throws {
        let text = "# lead comment\n\n  xenblk-trace 1  # header\n\n\tconnect domid=1\r\n   disconnect"
        let events = try TextTraceReader.parseAll(text: text, file: "p.trace")
        #expect(events.map(\.position) == [.line(5, column: 2), .line(6, column: 4)])
        #expect(TracePosition.line(12, column: 3).description == "line 12")
        #expect(TracePosition.packet(3).description == "packet 3")
        let packetError = TraceError(file: "x.pcap", position: .packet(3), message: "short packet")
        #expect(packetError.description == "x.pcap: packet 3: short packet")
    }

    @Test func formatDocumentExampleParses() throws {
        let example = """
            xenblk-trace 1
            # a duplicate gref whose persistent map fails
            connect domid=7 protocol=x86_64 persistent=1
            grant gref=5
            fail map gref=5 status=general_error
            request id=1 op=read sector=0 seg=5:0-7 seg=5:0-7
            expect response id=1 status=error
            disconnect
            """
        let events = try TextTraceReader.parseAll(text: example, file: "example.trace")
        let segment = BlkifSegment(gref: 5, firstSect: 0, lastSect: 7)
        #expect(events.map(\.kind) == [
            .connect(ConnectEvent(domid: 7, protocolName: .x86_64, persistent: true)),
            .grant(GrantEvent(grefs: 5...5, readOnly: false, domid: 7)),
            .fail(.mapGref(gref: 5, times: 1, status: .generalError)),
            .request(RequestEvent(id: 1, operation: 0, sector: 0, segments: [segment, segment])),
            .expect(.response(id: 1, status: .error), vbd: 0),
            .disconnect(vbd: 0),
        ])
        #expect(events.map(\.position) == [3, 4, 5, 6, 7, 8].map { .line($0, column: 1) })
    }

    @Test func requestEventStandsForItsRingRequest() {
        let segments = [BlkifSegment(gref: 9, firstSect: 1, lastSect: 2)]
        let lying = RequestEvent(id: 4, operation: 1, sector: 16, segments: segments, nrSegments: 3,
                                 handle: 2, vbd: 1, hold: true)
        #expect(lying.blkifRequest == BlkifRequest(operation: 1, nrSegments: 3, handle: 2, id: 4,
                                                   sectorNumber: 16, segments: segments))
        let honest = RequestEvent(id: 4, operation: 0, sector: 0, segments: segments)
        #expect(honest.blkifRequest.nrSegments == 1)
        let discard = RequestEvent(id: 5, operation: 5, sector: 8, nrSectors: 64)
        #expect(discard.blkifRequest.discardSectors == 64)
        #expect(discard.blkifRequest.isDiscard)
        #expect(RequestEvent(id: 6, operation: 5, sector: 8).blkifRequest.discardSectors == 0)
    }

    /// Syntax only: a segment past the page or reversed is for the backend to refuse.
    @Test func semanticallyBadSegmentsAreNotSyntaxErrors() throws {
        let text = "xenblk-trace 1\nrequest id=1 op=read sector=0 seg=1:9-8 seg=2:0-255 nr=200\n"
        let events = try TextTraceReader.parseAll(text: text, file: "s.trace")
        guard case let .request(request) = events[0].kind else {
            Issue.record("expected a request")
            return
        }
        #expect(request.segments == [BlkifSegment(gref: 1, firstSect: 9, lastSect: 8),
                                     BlkifSegment(gref: 2, firstSect: 0, lastSect: 255)])
        #expect(request.nrSegments == 200)
    }
}
