/// One whitespace-separated word of a line and the column it starts at.
/// The text is a slice of the trace's own string: lexing copies no bytes.
struct Token: Sendable {
    var text: Substring
    /// 1-based, in Unicode scalars.
    var column: Int
}

/// Hands out the lines of a text one at a time, so a reader never splits
/// (or holds the events of) the whole trace at once.
struct LineSource: Sendable {
    private let text: String
    /// Byte offset of the next line in `text`'s UTF-8.
    private var cursor = 0
    /// The number of the line last handed out.
    private(set) var lineNumber = 0

    init(text: String) {
        var text = text
        // Lexing reads the UTF-8 bytes in place; a bridged or foreign string is copied once here.
        text.makeContiguousUTF8()
        self.text = text
    }

    /// The byte range (in `text`'s UTF-8) of the next line, without its line
    /// break; nil at the end of the text. `lineNumber` becomes its number.
    mutating func nextLine() -> Range<Int>? {
        let found: Range<Int>?? = text.utf8.withContiguousStorageIfAvailable { bytes in
            guard cursor < bytes.count else { return nil }
            // Search bytes, not Characters: "\r\n" is a single Character.
            var end = cursor
            while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
            return cursor..<end
        }
        guard let line = found ?? nil else { return nil }
        cursor = line.upperBound < text.utf8.count ? line.upperBound + 1 : line.upperBound
        lineNumber += 1
        return line
    }

    /// Calls `body` with the text's UTF-8 bytes, which `init` made contiguous.
    func withBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result? {
        text.utf8.withContiguousStorageIfAvailable(body)
    }

    /// The tokens of the line at `range` (from `nextLine`), put in `tokens`
    /// (replacing what it held, so one buffer serves every line).
    func tokens(ofLine range: Range<Int>, into tokens: inout [Token]) {
        tokens.removeAll(keepingCapacity: true)
        let text = text
        text.utf8.withContiguousStorageIfAvailable { bytes in
            // A "\r" before the line break separates tokens anyway (see `scan`), so CRLF lines need nothing more.
            Self.scan(bytes, range) { range, column in
                tokens.append(Token(text: Self.slice(text, range), column: column))
            }
        }
    }

    /// The tokens of one line that holds no line break.
    static func tokens(of line: String) -> [Token] {
        var line = line
        line.makeContiguousUTF8()
        let text = line
        var tokens: [Token] = []
        text.utf8.withContiguousStorageIfAvailable { bytes in
            scan(bytes, 0..<bytes.count) { range, column in tokens.append(Token(text: slice(text, range), column: column)) }
        }
        return tokens
    }

    /// The characters of `text` at UTF-8 offsets `range` (which start and end
    /// on scalar boundaries: `scan` cuts only at ASCII bytes).
    private static func slice(_ text: String, _ range: Range<Int>) -> Substring {
        let utf8 = text.utf8
        return Substring(utf8[utf8.index(utf8.startIndex, offsetBy: range.lowerBound)..<utf8.index(utf8.startIndex, offsetBy: range.upperBound)])
    }

    /// Splits `bytes[range]` (valid UTF-8) at spaces and tabs, up to a `#`
    /// comment, and hands each token's byte range and column to `found`.
    /// Columns count Unicode scalars: every byte but a UTF-8 continuation
    /// byte (10xxxxxx) starts one.
    static func scan(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ found: (Range<Int>, Int) -> Void) {
        var start: Int?
        var startColumn = 0
        var column = 1
        var index = range.lowerBound
        while index < range.upperBound {
            let byte = bytes[index]
            if byte == UInt8(ascii: "#") { break }
            if byte & 0xC0 == 0x80 {   // inside a multi-byte scalar that already counted
                index += 1
                continue
            }
            // A stray carriage return separates tokens
            // too: kept inside a value it would not survive printing and re-reading.
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") {
                if let begin = start {
                    found(begin..<index, startColumn)
                    start = nil
                }
            } else if start == nil {
                start = index
                startColumn = column
            }
            column += 1
            index += 1
        }
        if let begin = start { found(begin..<index, startColumn) }
    }
}

/// A part of a token (a value, a segment's first sector, …) with its own
/// column, so that an error can point inside the token at what is wrong.
struct Piece: Sendable {
    var text: Substring
    var column: Int

    init(_ text: Substring, column: Int) {
        self.text = text
        self.column = column
    }

    init(_ token: Token) {
        self.init(token.text, column: token.column)
    }

    /// The parts before and after the first occurrence of `separator` (ASCII,
    /// so a byte search finds exactly what a scalar search would).
    func split(at separator: StaticString) -> (before: Piece, after: Piece)? {
        let pattern = UnsafeBufferPointer(start: separator.utf8Start, count: separator.utf8CodeUnitCount)
        // Tokens are slices of contiguous UTF-8 (LineSource makes it so), so
        // the search runs over the bytes in place; the index walk is the fallback.
        let found: (bytes: Int, scalars: Int)?? = text.utf8.withContiguousStorageIfAvailable { bytes in
            var scalars = 0
            var index = 0
            while index + pattern.count <= bytes.count {
                let byte = bytes[index]
                if byte == pattern[0], bytes[index..<(index + pattern.count)].elementsEqual(pattern) { return (index, scalars) }
                if byte & 0xC0 != 0x80 { scalars += 1 }
                index += 1
            }
            return nil
        }
        guard let found else { return splitWalking(at: pattern) }
        guard let (offset, scalars) = found else { return nil }
        let utf8 = text.utf8
        let separatorStart = utf8.index(utf8.startIndex, offsetBy: offset)
        let rest = utf8.index(separatorStart, offsetBy: pattern.count)
        return (Piece(Substring(utf8[..<separatorStart]), column: column),
                Piece(Substring(utf8[rest...]), column: column + scalars + pattern.count))
    }

    private func splitWalking(at pattern: UnsafeBufferPointer<UInt8>) -> (before: Piece, after: Piece)? {
        let utf8 = text.utf8
        var index = utf8.startIndex
        var offset = 0   // in scalars, for the column
        while index < utf8.endIndex {
            let byte = utf8[index]
            if byte == pattern[0], utf8[index...].starts(with: pattern) {
                let rest = utf8.index(index, offsetBy: pattern.count)
                return (Piece(Substring(utf8[..<index]), column: column),
                        Piece(Substring(utf8[rest...]), column: column + offset + pattern.count))
            }
            if byte & 0xC0 != 0x80 { offset += 1 }
            index = utf8.index(after: index)
        }
        return nil
    }
}

/// Text from the trace, quoted for a message: control, line-breaking and
/// invisible format characters (a BOM, say) escaped so a message stays on one
/// line and shows what is really there; long garbage cut short.
func quoted(_ text: some StringProtocol) -> String {
    var out = "'"
    for (count, scalar) in text.unicodeScalars.enumerated() {
        if count == 40 {
            out += "…"
            break
        }
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .unassigned:
            out += "\\u{" + String(scalar.value, radix: 16) + "}"
        default:
            out.unicodeScalars.append(scalar)
        }
    }
    return out + "'"
}

/// "expected X" or "expected one of X, Y, Z".
func expectedOne(of names: [String]) -> String {
    names.count == 1 ? "expected \(names[0])" : "expected one of " + names.joined(separator: ", ")
}
