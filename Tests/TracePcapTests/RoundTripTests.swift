import Blkif
import Foundation
import Harness
import TestSupport
import Testing
import Trace
import TracePcap

/// Canonical text → pcap → text is the identity; pcap → text → pcap gives the same bytes.
@Suite struct PcapRoundTripTests {
    static func suiteTraces() -> [String] {
        let root = Repository.root.appendingPathComponent("traces").path
        guard let walker = FileManager.default.enumerator(atPath: root) else { return [] }
        var found: [String] = []
        while let relative = walker.nextObject() as? String {
            if relative.hasSuffix(".trace") { found.append(root + "/" + relative) }
        }
        return found.sorted()
    }

    /// Every text trace of the suite, in canonical form, survives pcap unchanged.
    @Test func everySuiteTraceRoundTrips() throws {
        let scratch = try Scratch("suite")
        defer { scratch.cleanUp() }
        let files = Self.suiteTraces()
        #expect(files.count > 0, "no .trace files under traces/")
        for file in files {
            var reader = try TextTraceReader.open(path: file)
            var kinds: [TraceEventKind] = []
            while let event = try reader.next() { kinds.append(event.kind) }
            let canonical = TextTracePrinter.render(kinds)
            let back = try throughPcap(canonical, file: file, scratch: scratch)
            #expect(back == canonical, "\(file) changed through pcap")
        }
    }

    /// Random canonical traces of every event and edge value pcap can carry.
    @Test func generatedTracesRoundTrip() throws {
        let scratch = try Scratch("generated")
        defer { scratch.cleanUp() }
        let seed: UInt64 = ProcessInfo.processInfo.environment["TRACE_TEST_SEED"].flatMap(UInt64.init) ?? 0x9CA9_0001
        print("PcapRoundTripTests seed: \(seed) (set TRACE_TEST_SEED to replay another)")
        var generator = RandomEvents(seed: seed)
        for index in 0..<300 {
            let kinds = generator.pcapEvents(count: Int.random(in: 0...40, using: &generator.rng))
            let text = TextTracePrinter.render(kinds)
            let path = scratch.path("g\(index).pcap")
            try writePcap(kinds, to: path)
            let events = try PcapTraceReader.readAll(path: path)
            #expect(events.map(\.kind) == kinds, "case \(index) of seed \(seed):\n\(text)")
            #expect(events.map(\.position) == events.indices.map { .packet($0 + 2) })
            let back = try dumpPcap(path)
            #expect(back == text, "case \(index) of seed \(seed):\n\(text)")
            if back != text { break }
        }
    }

    /// A ring-request packet is a `request` exactly when encoding that request
    /// gives its bytes back; otherwise `raw`, with every byte kept.
    @Test func nonCanonicalRequestBytesStayRaw() throws {
        let scratch = try Scratch("raw")
        defer { scratch.cleanUp() }
        for ringProtocol in BlkifProtocol.allCases {
            let layout = ringProtocol.request
            let request = RequestEvent(id: 0x1122_3344_5566_7788, operation: 1, sector: 99,
                                       segments: [BlkifSegment(gref: 5, firstSect: 0, lastSect: 7)], handle: 3)
            let good = ringProtocol.encode(request.blkifRequest)
            var padded = good
            if ringProtocol != .x86_32 { padded[4] = 0xA5 }             // padding before the id
            var segmentPad = good
            segmentPad[layout.segments + 6] = 0xFF                       // a segment's pad
            var discard = ringProtocol.encode(BlkifRequest(operation: 5, id: 4, sectorNumber: 8, discardSectors: 16))
            discard[layout.segments + 8] = 1                             // past nr_sectors
            var cases = [segmentPad, discard]
            if ringProtocol != .x86_32 { cases.append(padded) }
            var kinds: [TraceEventKind] = [.connect(ConnectEvent(domid: 1, protocolName: ringProtocol)),
                                           .raw(RawRequestEvent(bytes: good, hold: true))]
            kinds += cases.map { .raw(RawRequestEvent(bytes: $0, vbd: 0)) }
            let path = scratch.path("\(ringProtocol).pcap")
            try writePcap(kinds, to: path)
            let events = try PcapTraceReader.readAll(path: path).map(\.kind)
            var held = request
            held.hold = true
            #expect(events[1] == .request(held))
            #expect(Array(events.dropFirst(2)) == cases.map { .raw(RawRequestEvent(bytes: $0)) })
            let text = try dumpPcap(path)
            #expect(text.contains("request id=1234605616436508552 op=write sector=99 seg=5:0-7 handle=3 hold\n"))
            // A slot beyond nr_segments is part of the request, not padding.
            var slot = good
            slot[layout.segments + 8 * 3 + 4] = 1
            #expect(RequestEvent(ringBytes: slot, protocol: ringProtocol)?.segments.count == 4)
            // The text keeps raw bytes as they are and reads back to the same packets.
            let again = scratch.path("\(ringProtocol)-again.pcap")
            try writePcap(try TextTraceReader.parseAll(text: text, file: "t").map(\.kind), to: again)
            #expect(try bytes(of: again) == bytes(of: path))
        }
    }

    @Test func theWriterIsDeterministicAndStampsPacketIndexes() throws {
        let scratch = try Scratch("det")
        defer { scratch.cleanUp() }
        let kinds = try TextTraceReader.parseAll(text: """
            xenblk-trace 1
            connect domid=3 persistent=1
            grant gref=1..2
            request id=1 op=write sector=0 seg=1:0-7 seg=2:0-7
            expect response id=1 status=okay
            disconnect
            """, file: "d.trace").map(\.kind)
        try writePcap(kinds, to: scratch.path("a.pcap"))
        try writePcap(kinds, to: scratch.path("b.pcap"))
        let a = try bytes(of: scratch.path("a.pcap"))
        #expect(a == (try bytes(of: scratch.path("b.pcap"))))
        // Global header: magic, 2.4, link type 147 at offset 20.
        #expect(Array(a[0..<4]) == [0xD4, 0xC3, 0xB2, 0xA1])
        #expect(Array(a[20..<24]) == [147, 0, 0, 0])
        // The response packet carries the request's operation (write = 1).
        let text = try dumpPcap(scratch.path("a.pcap"))
        #expect(text == TextTracePrinter.render(kinds))
    }

    @Test func eventsPcapCannotCarryAreWriterErrors() throws {
        let scratch = try Scratch("refuse")
        defer { scratch.cleanUp() }
        func refusal(_ kinds: [TraceEventKind]) -> String {
            do {
                try writePcap(kinds, to: scratch.path("r.pcap"))
                return ""
            } catch {
                return "\(error)"
            }
        }
        #expect(refusal([.request(RequestEvent(id: 1, operation: 0, sector: 0, vbd: 2))])
                == "a request on vbd 2 before any connect of it: pcap stores a request as the ring bytes of its vbd's protocol")
        #expect(refusal([.connect(ConnectEvent(domid: 1, protocolName: .x86_32)), .raw(RawRequestEvent(bytes: [1, 2]))])
                == "a raw request of 2 bytes on vbd 0, whose protocol x86_32 has 108-byte requests: a ring-request packet holds exactly one ring slot")
        // A value no word can spell travels as frontend-key-hex, and reads back.
        for value in ["a#b", "a b", "", " 1", "1\n"] {
            #expect(refusal([.frontendKey(name: "k", value: value)]) == "")
            let path = scratch.path("k.pcap")
            try writePcap([.frontendKey(name: "k", value: value)], to: path)
            #expect(try PcapTraceReader.readAll(path: path).map(\.kind) == [.frontendKey(name: "k", value: value)])
        }
    }
}
