import Testing
@testable import FakeXen

/// `NumberedTable` must answer exactly as a dictionary would, whatever mix of
/// numbers it is given, and must not hold on to memory for numbers long gone.
@Suite struct NumberedTableTests {
    /// How the numbers of a random run are drawn.
    enum NumberPattern: CaseIterable, Sendable {
        /// Counting up, never reused, freed in any order (frames, heap slots, bios).
        case counter
        /// A few small numbers used again and again (grefs, domain ids).
        case smallReused
        /// Anything: wild frames, huge grefs, zero, near the top of the range.
        case scattered
        /// All of the above interleaved in one table.
        case mixed
    }

    @Test(arguments: NumberPattern.allCases, [1, 2, 3] as [UInt64])
    func answersAsADictionaryWould(pattern: NumberPattern, seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        var table = NumberedTable<Int>(numbersPerChunkLog2: seed == 3 ? 3 : 6)
        var model: [UInt64: Int] = [:]
        var counter: UInt64 = 1_000
        var issued: [UInt64] = []

        func draw() -> UInt64 {
            switch pattern {
            case .counter: return counter
            case .smallReused: return UInt64.random(in: 0..<300, using: &random)
            case .scattered: return Self.scattered(using: &random)
            case .mixed:
                switch Int.random(in: 0..<3, using: &random) {
                case 0: return counter
                case 1: return UInt64.random(in: 0..<300, using: &random)
                default: return Self.scattered(using: &random)
                }
            }
        }

        for step in 0..<20_000 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<4:
                let number = draw()
                if number == counter { counter += UInt64.random(in: 1...3, using: &random) }
                table[number] = step
                model[number] = step
                issued.append(number)
            case 4..<7 where !issued.isEmpty:
                let number = issued.remove(at: Int.random(in: 0..<issued.count, using: &random))
                #expect(table.removeValue(at: number) == model.removeValue(forKey: number))
            case 7:
                let number = issued.randomElement(using: &random) ?? draw()
                let changed = table.modify(number) { value -> Int in value += 1; return value }
                if model[number] != nil { model[number]! += 1 }
                #expect(changed == model[number])
            case 8:
                let number = draw()
                table.modify(number, default: -1) { $0 += 10 }
                model[number, default: -1] += 10
                issued.append(number)
            default:
                let number = draw()
                #expect(table[number] == model[number])
            }
            #expect(table.count == model.count)
            if step % 1_000 == 0 { expectSameContents(table, model) }
        }
        expectSameContents(table, model)
        for (number, _) in model { table[number] = nil }
        #expect(table.isEmpty && table.allocatedChunkCount == 0 && table.windowLength == 0)
    }

    @Test func aCounterWithOneLongLivedNumberKeepsLittleMemory() {
        var table = NumberedTable<Int>()
        table[0] = 0
        // A million numbers come and go, at most 32 live at once (a queue's worth).
        for number in UInt64(1)...1_000_000 {
            table[number] = Int(number)
            if number > 32 { table[number - 32] = nil }
        }
        #expect(table.count == 33)
        #expect(table[0] == 0 && table[1_000_000] == 1_000_000 && table[999_968] == nil)
        // The old number pins its own chunk; the window in between is nils.
        #expect(table.allocatedChunkCount <= 3)
        #expect(table.windowLength <= 1_000_000 / 64 + 2)
        table[0] = nil
        #expect(table.windowLength <= 2)
    }

    @Test func outliersMoveIntoTheWindowWhenItGrowsOverThem() {
        var table = NumberedTable<String>()
        table[10] = "first"
        // Too far to stretch the window to: an outlier.
        table[10 + 64 * 2_000] = "far"
        #expect(table.windowLength == 1)
        // Counting up towards it stretches the window over it.
        for chunk in UInt64(1)...2_000 { table[10 + 64 * chunk - 1] = "step \(chunk)" }
        #expect(table.windowLength == 2_001)
        #expect(table[10 + 64 * 2_000] == "far")
        table[10 + 64 * 2_000] = nil
        #expect(table[10 + 64 * 2_000] == nil)
        #expect(table.count == 2_001)
        var previous: UInt64?
        table.forEachInOrder { number, _ in
            if let previous { #expect(previous < number) }
            previous = number
        }
    }

    private static func scattered(using random: inout SeededGenerator) -> UInt64 {
        switch Int.random(in: 0..<4, using: &random) {
        case 0: return UInt64.random(in: 0..<64, using: &random)
        case 1: return UInt64.max - UInt64.random(in: 0..<200, using: &random)
        case 2: return UInt64.random(in: 0..<1_000_000_000, using: &random)
        default: return UInt64.random(in: 0..<200_000, using: &random)
        }
    }

    private func expectSameContents(_ table: borrowing NumberedTable<Int>, _ model: [UInt64: Int], sourceLocation: SourceLocation = #_sourceLocation) {
        var listed: [(UInt64, Int)] = []
        table.forEachInOrder { listed.append(($0, $1)) }
        let expected = model.sorted { $0.key < $1.key }
        #expect(listed.map(\.0) == expected.map(\.key), sourceLocation: sourceLocation)
        #expect(listed.map(\.1) == expected.map(\.value), sourceLocation: sourceLocation)
        #expect(table.valuesInOrder == expected.map(\.value), sourceLocation: sourceLocation)
        for (number, value) in model { #expect(table[number] == value, sourceLocation: sourceLocation) }
    }
}
