import Blkif
import Testing
import Trace

/// The events of trace format version 2 (docs/trace-format.md §2.2): how
/// they read, print and fail, and that version 1 keeps refusing them.
@Suite struct FormatVersion2Tests {
    static func events(_ body: String, version: Int = 2) throws(TraceError) -> [TraceEventKind] {
        try TextTraceReader.parseAll(text: "xenblk-trace \(version)\n" + body, file: "v2.trace").map(\.kind)
    }

    static func error(_ body: String, version: Int = 2) -> String {
        do throws(TraceError) {
            _ = try events(body, version: version)
            return "no error"
        } catch {
            return error.description
        }
    }

    @Test func eachEventReadsAsWritten() throws {
        let kinds = try Self.events("""
            connect domid=3
            indirect id=7 op=write sector=16 seg=5:0-7 seg=6:2-3 page=9 handle=2 vbd=0 hold
            write gref=9 offset=4 hex=00ff
            write gref=9 offset=5 hex=07 domid=4 after-reads=2
            tick ms=150
            tick s=60
            param max_persistent_grants=64
            param feature_persistent=0
            param persistent_grant_unused_seconds=0
            param max_buffer_pages=0x10
            """)
        #expect(kinds.dropFirst().first == .indirect(IndirectRequestEvent(
            id: 7, operation: 1, sector: 16,
            segments: [BlkifSegment(gref: 5, firstSect: 0, lastSect: 7), BlkifSegment(gref: 6, firstSect: 2, lastSect: 3)],
            pages: [9], handle: 2, hold: true)))
        #expect(kinds[2] == .write(GuestWriteEvent(gref: 9, domid: 3, offset: 4, bytes: [0, 0xFF])))
        #expect(kinds[3] == .write(GuestWriteEvent(gref: 9, domid: 4, offset: 5, bytes: [7], afterReads: 2)))
        #expect(kinds[4] == .tick(milliseconds: 150))
        #expect(kinds[5] == .tick(milliseconds: 60_000))
        #expect(kinds[6] == .parameter(.maxPersistentGrants, value: 64))
        #expect(kinds[7] == .parameter(.featurePersistent, value: 0))
        #expect(kinds[8] == .parameter(.persistentGrantUnusedSeconds, value: 0))
        #expect(kinds[9] == .parameter(.maxBufferPages, value: 16))
        #expect(kinds.map(\.formatVersion) == [1] + Array(repeating: 2, count: 9))
    }

    /// `connect hotplug=after` is version 2; `hotplug=before` is the default
    /// and prints as nothing, so such a connect stays version 1.
    @Test func theHotplugOrderOfAConnect() throws {
        let kinds = try Self.events("connect domid=3 hotplug=after\nconnect domid=4 vbd=1 hotplug=before\n")
        #expect(kinds == [.connect(ConnectEvent(domid: 3, hotplugAfterConnect: true)),
                          .connect(ConnectEvent(domid: 4, vbd: 1))])
        #expect(kinds.map(\.formatVersion) == [2, 1])
        #expect(TextTracePrinter.render(kinds) == "xenblk-trace 2\nconnect domid=3 hotplug=after\nconnect domid=4 vbd=1\n")
        #expect(Self.error("connect domid=3 hotplug=after\n", version: 1)
                == "v2.trace:2:1: this 'connect' needs trace format version 2 (hotplug=after), and this trace's header says version 1; expected the header 'xenblk-trace 2' to use it")
        #expect(Self.error("connect domid=3 hotplug=late\n")
                == "v2.trace:2:25: 'late' is not valid for 'hotplug'; expected before or after")
    }

    @Test func canonicalTextOfTheNewEvents() throws {
        let text = TextTracePrinter.render(try Self.events("""
            connect domid=3
            indirect id=1 op=6 sector=0 seg=1:0-7 nr=1 page=4 page=0 page=0
            indirect id=2 op=read sector=0 page=0 page=5 page=0
            indirect id=3 op=read sector=0 nr=0x100 page=0
            write gref=1 offset=0 hex=AbCd domid=3
            tick ms=2000
            tick ms=1500
            param feature_persistent=1
            """))
        // Trailing zero pages past those the descriptors fill go; a page the
        // descriptors fill stays even when it is gref 0; nr= only when it lies.
        #expect(text == """
            xenblk-trace 2
            connect domid=3
            indirect id=1 op=6 sector=0 seg=1:0-7 page=4
            indirect id=2 op=read sector=0 page=0 page=5
            indirect id=3 op=read sector=0 nr=256
            write gref=1 offset=0 hex=abcd
            tick s=2
            tick ms=1500
            param feature_persistent=1

            """)
        // Canonical text reads back to itself.
        #expect(TextTracePrinter.render(try Self.events(String(text.dropFirst("xenblk-trace 2\n".count)))) == text)
    }

    /// A trace of version-1 events prints as version 1 even when it was read
    /// as version 2: the lowest version that carries them.
    @Test func theHeaderIsTheLowestVersionThatCarriesTheEvents() throws {
        #expect(TextTracePrinter.render(try Self.events("connect domid=1\n")) == "xenblk-trace 1\nconnect domid=1\n")
        #expect(TraceFormat.version(carrying: []) == 1)
        #expect(TraceFormat.version(carrying: [.tick(milliseconds: 1)]) == 2)
    }

    @Test func versionOneRefusesTheNewKeywords() {
        for line in ["tick ms=1", "param max_persistent_grants=1", "write gref=1 offset=0 hex=00 domid=1",
                     "indirect id=1 op=read sector=0 page=1"] {
            let keyword = line.split(separator: " ")[0]
            #expect(Self.error(line + "\n", version: 1)
                    == "v2.trace:2:1: '\(keyword)' is an event of trace format version 2, and this trace's header says version 1; expected the header 'xenblk-trace 2' to use it")
        }
    }

    @Test func malformedNewEvents() {
        let descriptors513 = (0..<513).map { _ in "seg=1:0-7" }.joined(separator: " ")
        let cases: [(String, String)] = [
            ("indirect id=1 op=read sector=0 seg=1:0-7", "2:32: 1 descriptors fill 1 indirect pages but 'indirect' names 0; expected a page=GREF for each 512 seg="),
            ("indirect id=1 op=read sector=0 \(descriptors513) page=1",
             "2:\(32 + 512 * 10): 513 descriptors fill 2 indirect pages but 'indirect' names 1; expected a page=GREF for each 512 seg="),
            ("indirect id=1 op=read sector=0 page=1 page=2 page=3 page=4 page=5 page=6 page=7 page=8 page=9",
             "2:88: more than 8 page= for 'indirect'; a ring slot carries at most 8 indirect grefs"),
            ("indirect id=1 op=read sector=0 nr=65536 page=1", "2:35: '65536' is out of range for 'nr'; expected 0..65535"),
            ("indirect op=read sector=0 page=1", "2:1: missing required key 'id' for 'indirect'; expected id=N"),
            ("write gref=1 offset=4096 hex=00 domid=1", "2:21: '4096' is out of range for 'offset'; expected 0..4095"),
            ("write gref=1 offset=4095 hex=0011 domid=1", "2:26: 2 bytes at offset 4095 end past the page; expected offset + bytes <= 4096"),
            ("write gref=1 offset=0 hex=00", "2:1: 'write' before any connect needs its domain; expected domid=1..32767"),
            ("write gref=1 offset=0 hex=00 domid=1 after-reads=0", "2:50: '0' is out of range for 'after-reads'; expected 1..9223372036854775807"),
            ("tick", "2:1: missing time for 'tick'; expected ms=N or s=N"),
            ("tick ms=1 s=1", "2:11: 'tick' takes ms= or s=, not both; expected one of them"),
            ("tick ms=1099511627777", "2:9: '1099511627777' is out of range for 'ms'; expected 0..1099511627776"),
            ("param", "2:1: missing parameter for 'param'; expected one of max_persistent_grants=N, max_buffer_pages=N, feature_persistent=N, persistent_grant_unused_seconds=N"),
            ("param feature_persistent=2", "2:26: '2' is out of range for 'feature_persistent'; expected 0..1"),
            ("param max_persistent_grants=2147483648", "2:29: '2147483648' is out of range for 'max_persistent_grants'; expected 0..2147483647"),
            ("param max_persistent_grants=1 max_buffer_pages=1", "2:31: 'param' sets one parameter per line; expected one NAME=VALUE"),
            ("param colour=red", "2:7: unknown key 'colour' for 'param'; expected one of max_persistent_grants, max_buffer_pages, feature_persistent, persistent_grant_unused_seconds"),
        ]
        for (line, message) in cases {
            #expect(Self.error(line + "\n") == "v2.trace:" + message, "\(line.prefix(60))")
        }
    }

    /// Descriptors travel as 8 bytes each, identical in every ABI.
    @Test func descriptorBytes() {
        let segment = BlkifSegment(gref: 0x0403_0201, firstSect: 5, lastSect: 7)
        #expect(segment.descriptorBytes == [1, 2, 3, 4, 5, 7, 0, 0])
        #expect(BlkifSegment(descriptorBytes: segment.descriptorBytes) == segment)
        #expect(BlkifSegment(descriptorBytes: [1, 2, 3, 4, 5, 7, 0, 1]) == nil)
        #expect(BlkifSegment(descriptorBytes: [1, 2, 3]) == nil)
    }

    /// The indirect event of a slot: canonical slots only, in each protocol.
    @Test func indirectEventOfRingBytes() {
        for ringProtocol in BlkifProtocol.allCases {
            let event = IndirectRequestEvent(id: 9, operation: 1, sector: 4,
                                             segments: [BlkifSegment(gref: 2, firstSect: 0, lastSect: 7)],
                                             nrSegments: 300, pages: [8, 0, 3], handle: 1)
            let slot = ringProtocol.encode(event.blkifRequest)
            #expect(IndirectRequestEvent(ringBytes: slot, protocol: ringProtocol, segments: event.segments) == event)
            var padded = slot
            padded[slot.count - 1] = 1
            #expect(IndirectRequestEvent(ringBytes: padded, protocol: ringProtocol, segments: event.segments) == nil)
            // A slot naming no page cannot carry a descriptor.
            let pageless = ringProtocol.encode(IndirectRequestEvent(id: 1, operation: 0, sector: 0, pages: []).blkifRequest)
            #expect(IndirectRequestEvent(ringBytes: pageless, protocol: ringProtocol, segments: []) != nil)
            #expect(IndirectRequestEvent(ringBytes: pageless, protocol: ringProtocol, segments: event.segments)?.pages == [0])
        }
    }
}
