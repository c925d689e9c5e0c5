/// One whitespace-separated word of a line and the column it starts at.
struct Token: Sendable {
    var text: String
    /// 1-based, in Unicode scalars.
    var column: Int
}

/// Hands out the lines of a text one at a time, so a reader never splits
/// (or holds the events of) the whole trace at once.
struct LineSource: Sendable {
    private let text: String
    private var cursor: String.Index
    /// The number of the line last handed out.
    private(set) var lineNumber = 0

    init(text: String) {
        self.text = text
        cursor = text.startIndex
    }

    mutating func next() -> (number: Int, tokens: [Token])? {
        guard cursor < text.endIndex else { return nil }
        // Search bytes, not Characters: "\r\n" is a single Character.
        let end = text.utf8[cursor...].firstIndex(of: UInt8(ascii: "\n")) ?? text.endIndex
        var scalars = text.unicodeScalars[cursor..<end]
        cursor = end < text.endIndex ? text.utf8.index(after: end) : end
        // Tolerate CRLF files: the "\r" belongs to the line break, not to the last token.
        if scalars.last == "\r" { scalars = scalars.dropLast() }
        lineNumber += 1
        return (lineNumber, Self.tokens(of: scalars))
    }

    /// Splits at spaces and tabs, up to a `#` comment.
    static func tokens(of line: Substring.UnicodeScalarView) -> [Token] {
        var tokens: [Token] = []
        var start: Substring.UnicodeScalarView.Index?
        var startColumn = 0
        var column = 1
        var index = line.startIndex
        func close(at end: Substring.UnicodeScalarView.Index) {
            if let begin = start {
                tokens.append(Token(text: String(Substring(line[begin..<end])), column: startColumn))
                start = nil
            }
        }
        while index < line.endIndex {
            let scalar = line[index]
            if scalar == "#" { break }
            // A stray carriage return separates tokens
            // too: kept inside a value it would not survive printing and re-reading.
            if scalar == " " || scalar == "\t" || scalar == "\r" {
                close(at: index)
            } else if start == nil {
                start = index
                startColumn = column
            }
            column += 1
            index = line.index(after: index)
        }
        close(at: index)
        return tokens
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
        self.init(Substring(token.text), column: token.column)
    }

    /// The parts before and after the first occurrence of `separator`, by scalars.
    func split(at separator: String) -> (before: Piece, after: Piece)? {
        let scalars = text.unicodeScalars
        let pattern = Array(separator.unicodeScalars)
        var index = scalars.startIndex
        var offset = 0
        while index < scalars.endIndex {
            if scalars[index...].starts(with: pattern) {
                let rest = scalars.index(index, offsetBy: pattern.count)
                return (Piece(Substring(scalars[..<index]), column: column),
                        Piece(Substring(scalars[rest...]), column: column + offset + pattern.count))
            }
            index = scalars.index(after: index)
            offset += 1
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
