import Backend
import Blkif
import FuzzSupport
import Foundation
import Harness
import Seeded
import TestSupport
import Testing
import Trace

/// The checks the fuzz targets make, run here on seeds and random inputs so
/// that a plain `swift test` catches what a fuzz run would.
@Suite struct FuzzPropertiesTests {
    @Test func requestABIRoundTripsOnRandomSlots() {
        var rng = SplitMix64(seed: 11)
        for _ in 0..<5000 {
            let length = Int.random(in: 0...120, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Often a plausible request: small opcode and segment count.
            if bytes.count > 2 && Bool.random(using: &rng) {
                bytes[1] = UInt8.random(in: 0...6, using: &rng)
                bytes[2] = UInt8.random(in: 0...12, using: &rng)
            }
            let finding = FuzzProperties.requestABI(bytes)
            #expect(finding == nil, "\(finding ?? "")")
            if finding != nil { return }
        }
    }

    @Test func theTextReaderHandlesTheSuiteAndItsMutations() throws {
        var rng = SplitMix64(seed: 12)
        for file in Repository.traceFiles() {
            let bytes = Array(try Data(contentsOf: file))
            #expect(FuzzProperties.traceText(bytes) == nil, "\(file.lastPathComponent)")
            for _ in 0..<20 {
                var mutated = bytes
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !mutated.isEmpty {
                    mutated[Int.random(in: 0..<mutated.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                let finding = FuzzProperties.traceText(mutated)
                #expect(finding == nil, "\(file.lastPathComponent) mutated: \(finding ?? "")")
            }
        }
    }

    @Test func decodedTracesPrintAsTextThatReadsBack() {
        for input in randomFuzzInputs(count: 300, seed: 13) {
            let text = Array(FuzzDecoder.text(input).utf8)
            #expect(FuzzProperties.traceText(text) == nil)
        }
    }

    @Test func thePcapReaderRejectsGarbage() {
        var rng = SplitMix64(seed: 14)
        for _ in 0..<200 {
            let bytes = (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(FuzzProperties.pcap(bytes) == nil)
        }
    }

    @Test func fuzzReplayFindsNothingUnderFixedOnDecodedRandomInputs() {
        for input in randomFuzzInputs(count: 500, seed: 15) {
            let finding = FuzzProperties.replay(input, variant: .fixed)
            #expect(finding == nil, "\(finding ?? "")\n\(FuzzDecoder.text(input))")
            if finding != nil { return }
        }
    }
}

/// corpus/: every seed keeps passing its target's check (the corpus is for the fixed backend).
@Suite struct CorpusTests {

    static func inputs(_ target: String) -> [(name: String, bytes: [UInt8])] {
        let directory = Repository.corpus.appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.sorted().compactMap { name in
            (try? Data(contentsOf: directory.appendingPathComponent(name))).map { (name, Array($0)) }
        }
    }

    @Test(arguments: ["FuzzReplay", "FuzzTraceText", "FuzzPcap", "FuzzRequestABI"])
    func everySeedPasses(target: String) {
        for (name, bytes) in Self.inputs(target) {
            let finding: String?
            switch target {
            case "FuzzReplay":
                finding = FuzzProperties.replay(bytes, variant: .fixed)
            case "FuzzTraceText": finding = FuzzProperties.traceText(bytes)
            case "FuzzPcap": finding = FuzzProperties.pcap(bytes)
            default: finding = FuzzProperties.requestABI(bytes)
            }
            #expect(finding == nil, "corpus/\(target)/\(name): \(finding ?? "")")
        }
    }
}
