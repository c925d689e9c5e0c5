import Backend
import Blkif
import FuzzSupport
import Foundation
import Harness
import Seeded
import TestSupport
import Testing
import Trace


@Suite struct FuzzDecoderTests {
    @Test func everyInputDecodesToAValidBoundedTrace() {
        for (index, input) in randomFuzzInputs(count: 3000, seed: 1).enumerated() {
            let events = FuzzDecoder.decode(input)
            #expect(events.count <= FuzzFormat.maxEvents)
            #expect(!events.contains { if case .expect = $0 { true } else { false } })
            let report = replay(events)
            #expect(report.traceError == nil, "input \(index): \(report.traceError!.description)\n\(TextTracePrinter.render(events))")
            if report.traceError != nil { return }
        }
    }

    @Test func everyQuirkBackendReplaysDecodedInputsWithoutTraceErrors() {
        let inputs = randomFuzzInputs(count: 300, seed: 2)
        for variant in BackendVariant.matrix {
            for input in inputs {
                let report = replay(FuzzDecoder.decode(input), backend: variant)
                #expect(report.traceError == nil, "\(variant): \(report.traceError!.description)")
                if report.traceError != nil { return }
            }
        }
    }

    @Test func decodingIsDeterministic() {
        for input in randomFuzzInputs(count: 200, seed: 3) {
            #expect(FuzzDecoder.decode(input) == FuzzDecoder.decode(input))
        }
    }

    @Test func decodeEncodeDecodeIsTheIdentity() {
        for (index, input) in randomFuzzInputs(count: 3000, seed: 4).enumerated() {
            let events = FuzzDecoder.decode(input)
            let encoding = FuzzEncoder.encode(events)
            if let skipped = encoding.skipped.first {
                Issue.record("input \(index): event \(skipped.index) \(events[skipped.index]): \(skipped.reason)")
                return
            }
            #expect(encoding.events == events)
            let again = FuzzDecoder.decode(encoding.bytes)
            #expect(again == events, "input \(index)")
            if again != events { return }
        }
    }

    @Test func decodedTracesSurviveTheTextFormat() throws {
        for input in randomFuzzInputs(count: 1000, seed: 5) {
            let events = FuzzDecoder.decode(input)
            let text = TextTracePrinter.render(events)
            let parsed = try TextTraceReader.parseAll(text: text, file: "decoded.trace").map(\.kind)
            let canonical = parsed.map(FuzzEncoder.canonical)
            if let index = zip(canonical, events).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
                Issue.record("event \(index): read back \(canonical[index]), decoded \(events[index])")
                return
            }
            #expect(canonical.count == events.count)
        }
    }

    @Test func inputsAreBounded() {
        // 64 KiB of one-byte grant choices: the event limit stops it.
        let grants = [UInt8](repeating: FuzzFormat.Opcode.grant.lowerBound, count: 100_000)
        #expect(FuzzDecoder.decode(grants).count == FuzzFormat.maxEvents)
        // Huge explicit ranges: the budget of range grefs holds.
        var big: [UInt8] = []
        for _ in 0..<40 { big += [FuzzFormat.Opcode.grant.lowerBound, 0, 0x20, 0xFD, 0xFF, 0xFF] }
        let events = FuzzDecoder.decode(big)
        let pages = events.reduce(0) { total, event in
            if case .grant(let grant) = event { return total + grant.grefs.count }
            return total
        }
        #expect(pages == FuzzFormat.maxRangePages)
    }

    @Test func reservedOpcodesAreNoOps() {
        let prefix: [UInt8] = [0x5C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00]
        let base = FuzzDecoder.decode(prefix)
        for reserved in FuzzFormat.Opcode.reserved {
            #expect(FuzzDecoder.decode([reserved] + prefix + [reserved]) == base)
        }
    }

    /// Format 4's connect with a late hotplug: the connect's parameters, and
    /// `hotplug=after`; in format 3 the same bytes are a reserved no-op.
    @Test func aLateHotplugConnectFromFormat4On() {
        let bytes: [UInt8] = [0xAC, 0x04, 0x00, 0x00, 0x00, 0x00]
        #expect(FuzzDecoder.decode(bytes) == [.connect(ConnectEvent(domid: 1, persistent: false, hotplugAfterConnect: true))])
        #expect(FuzzDecoder.decode(bytes, version: 3).isEmpty)
        #expect(FuzzEncoder.encode(FuzzDecoder.decode(bytes)).bytes == bytes)
    }

    @Test func connectAgainRepeatsALiveVbdsDomainAndRing() {
        // connect (x86_32, domid 2, vbd 1), connect again (index 0, persistent=0), then again with nothing connected
        let connect: [UInt8] = [0x5C, 0x01, 0x01, 0x01, 0x00, 0x00]
        let events = FuzzDecoder.decode(connect + [0x90, 0x07, 0x04, 0x68, 0x00, 0x93, 0x00, 0x00])
        #expect(events == [
            .connect(ConnectEvent(domid: 2, protocolName: .x86_32, persistent: true, vbd: 1)),
            .connect(ConnectEvent(domid: 2, protocolName: .x86_32, persistent: false, vbd: 1)),
            .disconnect(vbd: 1),
        ])
    }

    /// Golden inputs: the format is stable, so these bytes mean these traces forever.
    @Test func theFormatIsStable() {
        let cases: [([UInt8], String)] = [
            ([], "xenblk-trace 1\n"),
            // connect (native, persistent=1, vbd 0, domid 1, default limit, default disk),
            // grant gref=1, request read of gref 1 sectors 0-7 (id 1, sector 0).
            ([0x5C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x01, 0x38],
             """
             xenblk-trace 1
             connect domid=1 persistent=1
             grant gref=1
             request id=1 op=read sector=0 seg=1:0-7

             """),
            // connect x86_32 persistent=0 vbd 1 domid 3, max 2, 16 sectors; a write held with a lying nr;
            // a revoke of 4 from domid 2; fail map nth=3; a complete; a frontend key; a disconnect.
            ([0x5D, 0x05, 0x01, 0x02, 0x02, 0x01,
              0x01, 0x19, 0x05, 0x02, 0x00, 0x02, 0x03, 0x3A, 0xFC, 0x2A, 0xC0, 0x09, 0x02,
              0x80, 0x04, 0x14, 0x01,
              0x70, 0x01, 0x02, 0x00,
              0x90, 0xFF,
              0x50, 0x00, 0x00,
              0x8C, 0x03,
              0x68, 0x00],
             """
             xenblk-trace 1
             connect domid=3 protocol=x86_32 persistent=0 max-persistent=2 sectors=16 vbd=1
             request id=2 op=write sector=0 seg=3:2-7 seg=42:9-2 nr=5 vbd=1 hold
             revoke gref=4..5 domid=2
             fail map nth=3 status=general_error
             complete id=2 vbd=1
             frontend-key feature-persistent-grants 0
             disconnect vbd=1

             """),
        ]
        // Written under format 1, where 0x90 was reserved: read as format 1 they keep their meaning.
        for (bytes, text) in cases {
            #expect(FuzzDecoder.text(bytes, version: 1) == text)
        }
        // Format 2 reads 0x90 as connect again (index 0xFF, flags 0x50), which takes the
        // complete's opcode as its flags, so the rest shifts: a saved file names its format.
        #expect(FuzzDecoder.text(cases[2].0, version: 2) == """
            xenblk-trace 1
            connect domid=3 protocol=x86_32 persistent=0 max-persistent=2 sectors=16 vbd=1
            request id=2 op=write sector=0 seg=3:2-7 seg=42:9-2 nr=5 vbd=1 hold
            revoke gref=4..5 domid=2
            fail map nth=3 status=general_error
            connect domid=3 protocol=x86_32 persistent=1 vbd=1
            request id=12 op=read sector=16 nr=8 vbd=1

            """)
    }
}
