/// Turns one line of a trace into what it says. A parser may keep state
/// (fio's header and clock, a CSV header seen); it never keeps lines.
protocol TraceLineParser {
    mutating func parse(_ line: UnsafeBufferPointer<UInt8>) throws(LineProblem) -> TraceLine
}

/// The lines every format skips alike: blank ones, and comments (`#` first).
enum CommonLines {
    static func skipReason(_ line: UnsafeBufferPointer<UInt8>) -> SkipReason? {
        for byte in line where !LineFields.isBlank(byte) {
            return byte == 0x23 ? .comment : nil
        }
        return .blank
    }

    static func isLetter(_ byte: UInt8) -> Bool { (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) }
}

/// The comma-separated formats: a fixed list of leading fields, one
/// optional header line (its first field starts with a letter) before the
/// first record, and any further fields ignored.
struct CSVLines {
    let fieldNames: [String]
    var sawData = false

    init(fieldNames: [String]) { self.fieldNames = fieldNames }

    /// The line's fields, or nil when it is the header.
    mutating func fields(_ line: UnsafeBufferPointer<UInt8>) throws(LineProblem) -> LineFields? {
        let fields = LineFields(line, separator: 0x2C)
        let first = fields.bytes(0)
        if !sawData, let lead = first.first, CommonLines.isLetter(lead) {
            sawData = true
            return nil
        }
        sawData = true
        guard fields.count >= fieldNames.count else {
            throw LineProblem("expected \(fieldNames.count) comma-separated fields (\(fieldNames.joined(separator: ","))), found \(fields.count)")
        }
        return fields
    }
}
