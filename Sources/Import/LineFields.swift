/// A line's fields, split by a separator byte (CSV) or by runs of blanks,
/// as byte ranges of the line: no strings are made for fields not used.
struct LineFields {
    let line: UnsafeBufferPointer<UInt8>
    private(set) var ranges: [Range<Int>] = []

    /// Fields separated by `separator`; blanks around each field are dropped.
    init(_ line: UnsafeBufferPointer<UInt8>, separator: UInt8) {
        self.line = line
        ranges.reserveCapacity(8)
        var fieldStart = 0
        for index in 0...line.count {
            if index == line.count || line[index] == separator {
                ranges.append(Self.trimmed(line, fieldStart..<index))
                fieldStart = index + 1
            }
        }
    }

    /// Fields separated by runs of spaces and tabs.
    init(whitespaceSeparated line: UnsafeBufferPointer<UInt8>) {
        self.line = line
        ranges.reserveCapacity(12)
        var index = 0
        while index < line.count {
            while index < line.count && Self.isBlank(line[index]) { index += 1 }
            let fieldStart = index
            while index < line.count && !Self.isBlank(line[index]) { index += 1 }
            if index > fieldStart { ranges.append(fieldStart..<index) }
        }
    }

    static func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }

    private static func trimmed(_ line: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int> {
        var lower = range.lowerBound
        var upper = range.upperBound
        while lower < upper && isBlank(line[lower]) { lower += 1 }
        while upper > lower && isBlank(line[upper - 1]) { upper -= 1 }
        return lower..<upper
    }

    var count: Int { ranges.count }

    func bytes(_ index: Int) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: line[ranges[index]]) }

    /// The field as text, for names and messages (invalid UTF-8 repaired).
    func text(_ index: Int) -> String { String(decoding: bytes(index), as: UTF8.self) }

    /// Whether the field is exactly `word` (ASCII, case-insensitive when asked).
    func equals(_ index: Int, _ word: StaticString, ignoringCase: Bool = false) -> Bool {
        let field = bytes(index)
        guard field.count == word.utf8CodeUnitCount else { return false }
        let expected = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        for i in 0..<field.count {
            var a = field[i]
            var b = expected[i]
            if ignoringCase {
                a = Self.lowercased(a)
                b = Self.lowercased(b)
            }
            if a != b { return false }
        }
        return true
    }

    static func lowercased(_ byte: UInt8) -> UInt8 { (0x41...0x5A).contains(byte) ? byte | 0x20 : byte }

    /// An unsigned decimal integer, or a problem naming the field.
    /// A field that names the operation with one word for reads and one for
    /// writes, in any case (MSR's Read/Write, SPC's r/w, Alibaba's R/W).
    func operation(_ index: Int, _ name: String, read: StaticString, write: StaticString)
        throws(LineProblem) -> IORecord.Kind {
        if equals(index, read, ignoringCase: true) { return .read }
        if equals(index, write, ignoringCase: true) { return .write }
        throw LineProblem("\(name) '\(LineFields.shown(text(index)))' is neither \(read) nor \(write)")
    }

    func number(_ index: Int, _ name: String) throws(LineProblem) -> UInt64 {
        guard let value = Self.decimal(bytes(index)) else {
            throw LineProblem("\(name) '\(Self.shown(text(index)))' is not an unsigned decimal number that fits 64 bits")
        }
        return value
    }

    /// A decimal number of units with up to `fractionDigits` digits after
    /// the point (`12.5` seconds as nanoseconds: 9), in those small units;
    /// further digits are cut off.
    func scaled(_ index: Int, _ name: String, fractionDigits: Int) throws(LineProblem) -> UInt64 {
        guard let value = Self.scaledDecimal(bytes(index), fractionDigits: fractionDigits) else {
            throw LineProblem("\(name) '\(Self.shown(text(index)))' is not an unsigned decimal number in range")
        }
        return value
    }

    static func decimal(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64? {
        guard !bytes.isEmpty else { return nil }
        var value: UInt64 = 0
        for byte in bytes {
            guard (0x30...0x39).contains(byte) else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt64(byte - 0x30))
            if o1 || o2 { return nil }
            value = sum
        }
        return value
    }

    static func scaledDecimal(_ bytes: UnsafeBufferPointer<UInt8>, fractionDigits: Int) -> UInt64? {
        var whole: UInt64 = 0
        var fraction: UInt64 = 0
        var digitsAfterPoint = 0
        var seenPoint = false
        var digits = 0
        for byte in bytes {
            if byte == 0x2E {
                if seenPoint { return nil }
                seenPoint = true
                continue
            }
            guard (0x30...0x39).contains(byte) else { return nil }
            digits += 1
            let digit = UInt64(byte - 0x30)
            if !seenPoint {
                let (times, o1) = whole.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times.addingReportingOverflow(digit)
                if o1 || o2 { return nil }
                whole = sum
            } else if digitsAfterPoint < fractionDigits {
                fraction = fraction * 10 + digit
                digitsAfterPoint += 1
            }
        }
        guard digits > 0 else { return nil }
        var scale: UInt64 = 1
        for _ in 0..<fractionDigits { scale *= 10 }
        for _ in digitsAfterPoint..<fractionDigits { fraction *= 10 }
        let (big, o1) = whole.multipliedReportingOverflow(by: scale)
        let (total, o2) = big.addingReportingOverflow(fraction)
        return o1 || o2 ? nil : total
    }

    /// A field as a message shows it: at most 40 characters.
    static func shown(_ text: String) -> String { text.count > 40 ? String(text.prefix(40)) + "…" : text }
}

extension UInt64 {
    /// `self × factor`, or a problem saying what overflowed.
    func times(_ factor: UInt64, _ what: String) throws(LineProblem) -> UInt64 {
        let (product, overflow) = multipliedReportingOverflow(by: factor)
        if overflow { throw LineProblem("\(what) \(self) is too large (the product overflows 64 bits)") }
        return product
    }
}
