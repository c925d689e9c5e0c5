import Foundation
import TestSupport
import Testing
import Trace

@Suite struct RobustnessTests {
    /// The reader hands out events as it reaches them: the 7,500 events of 10k
    /// lines come out one by one before it ever sees the bad line at the end.
    @Test func tenThousandLinesStream() throws {
        let body = [
            "connect domid=3", "grant gref=1..11", "request id=1 op=write sector=8 seg=1:0-7 hold",
            "complete id=1", "# a comment", "", "expect response id=1 status=okay", "disconnect",
        ]
        var text = "xenblk-trace 1\n"
        for index in 0..<10_000 { text += body[index % body.count] + "\n" }
        text += "bogus line\n"
        var reader = TextTraceReader(text: text, file: "long.trace")
        var events = 0
        while events < 7_500 {
            guard let event = try reader.next() else { break }
            events += 1
            // The 7500th event is the last body line.
            if events == 7_500 { #expect(event.position == .line(10_001, column: 1)) }
        }
        #expect(events == 7_500)   // two lines in eight are blank or comments
        #expect(throws: TraceError(file: "long.trace", position: .line(10_002, column: 1),
                                   message: "unknown keyword 'bogus'; expected one of frontend-key, frontend-key-hex, connect, grant, revoke, fail, request, raw, complete, expect, disconnect, indirect, write, tick, param, generations")) {
            _ = try reader.next()
        }
    }

    /// Random bytes, random tokens after a header, and mutated valid traces:
    /// the reader either reads them or reports a one-line error in range,
    /// and whatever it reads prints to text that reads back the same.
    @Test func garbageNeverCrashes() throws {
        let seed = testSeed(default: 0x6A_2BA6E)
        print("RobustnessTests garbage seed: \(seed) (set TRACE_TEST_SEED to replay another)")
        var generator = RandomEvents(seed: seed)
        let pieces = ["xenblk-trace", "1", "connect", "grant", "request", "fail", "map", "expect", "violation",
                      "domid=", "gref=", "seg=", "op=", "id=", "hex=", "nr=", "..", ":", "-", "=", "#", "0x",
                      "ro", "hold", "persistent=", "response", "status=", "\t", " ", "\n", "\r\n", "7", "é", "\u{301}"]
        var accepted = 0
        for index in 0..<2_000 {
            let text: String
            switch index % 3 {
            case 0:
                let bytes = (0..<Int.random(in: 0...200, using: &generator.rng)).map { _ in
                    UInt8.random(in: 0...255, using: &generator.rng)
                }
                text = String(decoding: bytes, as: UTF8.self)
            case 1:
                text = "xenblk-trace 1\n" + (0..<Int.random(in: 0...60, using: &generator.rng)).map { _ in
                    pieces.randomElement(using: &generator.rng)!
                }.joined()
            default:
                var bytes = Array(TextTracePrinter.render(generator.textEvents(count: 8)).utf8)
                for _ in 0..<Int.random(in: 1...4, using: &generator.rng) where !bytes.isEmpty {
                    let at = Int.random(in: 0..<bytes.count, using: &generator.rng)
                    switch Int.random(in: 0..<3, using: &generator.rng) {
                    case 0: bytes[at] = UInt8.random(in: 0...255, using: &generator.rng)
                    case 1: bytes.insert(Array(pieces.randomElement(using: &generator.rng)!.utf8)[0], at: at)
                    default: bytes.remove(at: at)
                    }
                }
                text = String(decoding: bytes, as: UTF8.self)
            }
            let lineCount = text.utf8.count(where: { $0 == UInt8(ascii: "\n") }) + 1
            do {
                let events = try TextTraceReader.parseAll(text: text, file: "garbage.trace")
                accepted += 1
                // Printing is canonical (requests normalised, a raw that is
                // exactly a request's bytes printed as that request), so the
                // printed text is a fixed point rather than the same events.
                let printed = TextTracePrinter.render(events.map(\.kind))
                let again = try TextTraceReader.parseAll(text: printed, file: "again.trace")
                #expect(TextTracePrinter.render(again.map(\.kind)) == printed, "case \(index) of seed \(seed)")
                #expect(again.count == events.count, "case \(index) of seed \(seed)")
            } catch {
                #expect(!error.description.contains("\n") && !error.description.contains("\r"),
                        "case \(index) of seed \(seed)")
                guard case let .line(line, column) = error.position else {
                    Issue.record("a text error must have a line position")
                    continue
                }
                #expect((1...lineCount).contains(line) && column >= 1, "case \(index) of seed \(seed): \(error)")
                #expect(error.file == "garbage.trace")
            }
        }
        // Mutations leave some traces valid; make sure that path was exercised.
        #expect(accepted > 0)
    }

    @Test func openReadsAFile() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("trace-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let good = directory.appendingPathComponent("good.trace").path
        try Data("xenblk-trace 1\nconnect domid=2\n".utf8).write(to: URL(fileURLWithPath: good))
        var reader = try TextTraceReader.open(path: good)
        #expect(try reader.next()?.kind == .connect(ConnectEvent(domid: 2)))
        #expect(try reader.next() == nil)

        let bad = directory.appendingPathComponent("bad.trace").path
        try Data(Array("xenblk-trace 1\n# ok\n  \u{e9}x".utf8) + [0xFF, 0x0A]).write(to: URL(fileURLWithPath: bad))
        #expect(throws: TraceError(file: bad, position: .line(3, column: 5),
                                   message: "bytes that are not UTF-8; expected a UTF-8 text trace")) {
            _ = try TextTraceReader.open(path: bad)
        }

        let missing = directory.appendingPathComponent("missing.trace").path
        #expect(throws: TraceError(file: missing, position: .line(0, column: 0),
                                   message: "cannot read the trace: No such file or directory; expected a readable text file")) {
            _ = try TextTraceReader.open(path: missing)
        }
        let error = #expect(throws: TraceError.self) { _ = try TextTraceReader.open(path: directory.path) }
        #expect(error?.position == .line(0, column: 0))
        #expect(error?.description.hasPrefix("\(directory.path):0:0: cannot read the trace: ") == true)
    }
}
