import Foundation
@testable import Import
import TestSupport
import Testing

/// FuzzImport's property, run in `swift test` on its seeds and on inputs
/// made from them: the fuzz target checks exactly this.
@Suite struct ImportFuzzingTests {
    static let seeds: [URL] = {
        let directory = Repository.corpus.appendingPathComponent("FuzzImport")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.sorted().map { directory.appendingPathComponent($0) }
    }()

    @Test func theSeedsCoverEveryFormat() throws {
        #expect(Self.seeds.count >= 6)
        let formats = Set(try Self.seeds.map { try bytes(of: $0.path) }.map { ImportFuzzing.options($0.withUnsafeBufferPointer { $0 }).format })
        #expect(formats == Set(ImportFormat.allCases))
    }

    @Test func everySeedHoldsTheProperty() throws {
        for seed in Self.seeds {
            let input = try bytes(of: seed.path)
            let finding = input.withUnsafeBufferPointer { ImportFuzzing.check($0) }
            #expect(finding == nil, "\(seed.lastPathComponent): \(finding ?? "")")
        }
    }

    /// Seeds cut short, bytes flipped, formats swapped: errors or clean recordings, nothing else.
    @Test func mutatedSeedsHoldTheProperty() throws {
        var state: UInt64 = 0x5EED
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(max(bound, 1)))
        }
        for seed in Self.seeds {
            let original = try bytes(of: seed.path)
            for _ in 0..<12 {
                var input = original
                switch next(4) {
                case 0: input = Array(input.prefix(next(input.count) + 1))
                case 1: for _ in 0..<4 { input[next(input.count)] = UInt8(truncatingIfNeeded: next(256)) }
                case 2: input[0] = UInt8(next(6)); input[1] = UInt8(next(256))
                default: input.insert(contentsOf: Array("\n#x,\u{1F}\u{8B} 8,0 0 1 0.5 1 D FN\n".utf8), at: next(input.count))
                }
                let finding = input.withUnsafeBufferPointer { ImportFuzzing.check($0) }
                #expect(finding == nil, "\(seed.lastPathComponent) mutated: \(finding ?? "") \(input.prefix(64))")
            }
        }
    }

    @Test func anEmptyInputIsAnErrorNotAFinding() {
        #expect([UInt8]().withUnsafeBufferPointer { ImportFuzzing.check($0) } == nil)
        #expect([UInt8(2)].withUnsafeBufferPointer { ImportFuzzing.check($0) } == nil)
    }
}
