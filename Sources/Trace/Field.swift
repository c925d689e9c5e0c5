import Blkif

/// A bad value: where inside the line, and what was wrong and expected.
/// Carries no file or line so that value parsing stays independent of them.
struct FieldError: Error {
    var column: Int
    var message: String
}

/// How to read the value of one key (`key` is its name, for messages).
struct Field<Value> {
    let read: (Piece, _ key: String) throws(FieldError) -> Value
}

/// The lexical form of an unsigned number: decimal or `0x` hex, nothing else.
enum UnsignedLexeme: Equatable {
    case value(UInt64)
    case notANumber
    case tooLarge

    /// One pass over the bytes: any byte that is not a digit of the radix
    /// makes it not a number, whatever the length; only then does overflow count.
    init(_ text: Substring) {
        let utf8 = text.utf8
        var index = utf8.startIndex
        var isHex = false
        if utf8.count >= 2, utf8[index] == UInt8(ascii: "0"), utf8[utf8.index(after: index)] == UInt8(ascii: "x") {
            isHex = true
            index = utf8.index(index, offsetBy: 2)
        }
        guard index < utf8.endIndex else {
            self = .notANumber
            return
        }
        let radix: UInt64 = isHex ? 16 : 10
        var value: UInt64 = 0
        var overflowed = false
        while index < utf8.endIndex {
            let byte = utf8[index]
            let digit: UInt8
            if isHex {
                guard let nibble = byte.hexDigitValue else {
                    self = .notANumber
                    return
                }
                digit = nibble
            } else {
                guard byte.isDecimalDigit else {
                    self = .notANumber
                    return
                }
                digit = byte - UInt8(ascii: "0")
            }
            if !overflowed {
                let (shifted, over1) = value.multipliedReportingOverflow(by: radix)
                let (sum, over2) = shifted.addingReportingOverflow(UInt64(digit))
                overflowed = over1 || over2
                value = sum
            }
            index = utf8.index(after: index)
        }
        self = overflowed ? .tooLarge : .value(value)
    }
}

extension UInt8 {
    var isDecimalDigit: Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) }
    var isHexDigit: Bool { hexDigitValue != nil }
    var hexDigitValue: UInt8? {
        switch self {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): self - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): self - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): self - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension Field where Value: FixedWidthInteger {
    /// A number in `min...max`; the bounds are never negative.
    static func integer(min: Value = 0, max: Value = .max) -> Field {
        Field { (piece, key) throws(FieldError) -> Value in try readInteger(piece, min: min, max: max, key: key) }
    }
}

/// A number in `min...max` (never negative). `key` names the value in
/// messages; it is built only for one, as values are read far more often
/// than they are wrong.
func readInteger<Value: FixedWidthInteger>(_ piece: Piece, min: Value, max: Value,
                                           key: @autoclosure () -> String) throws(FieldError) -> Value {
    switch UnsignedLexeme(piece.text) {
    case .notANumber:
        throw FieldError(column: piece.column, message:
            "\(quoted(piece.text)) is not a number for '\(key())'; expected \(min)..\(max) in decimal or 0x hex")
    case .tooLarge:
        throw FieldError(column: piece.column, message:
            "\(quoted(piece.text)) is out of range for '\(key())'; expected \(min)..\(max)")
    case let .value(number):
        guard let value = Value(exactly: number), value >= min, value <= max else {
            throw FieldError(column: piece.column, message:
                "\(quoted(piece.text)) is out of range for '\(key())'; expected \(min)..\(max)")
        }
        return value
    }
}

extension Field where Value == Bool {
    static var bool: Field {
        Field { (piece, key) throws(FieldError) -> Bool in
            switch piece.text {
            case "0": return false
            case "1": return true
            default:
                throw FieldError(column: piece.column, message: "\(quoted(piece.text)) is not valid for '\(key)'; expected 0 or 1")
            }
        }
    }

    /// `hotplug=before|after`: true when the hotplug script runs after the frontend connected.
    static var hotplugOrder: Field {
        Field { (piece, key) throws(FieldError) -> Bool in
            switch piece.text {
            case "before": return false
            case "after": return true
            default:
                throw FieldError(column: piece.column, message: "\(quoted(piece.text)) is not valid for '\(key)'; expected before or after")
            }
        }
    }
}

extension Field where Value == ClosedRange<UInt32> {
    /// `N` or the inclusive range `A..B`.
    static var grefs: Field {
        Field { (piece, key) throws(FieldError) -> ClosedRange<UInt32> in
            let number = Field<UInt32>.integer()
            guard let (low, high) = piece.split(at: "..") else {
                let gref = try number.read(piece, key)
                return gref...gref
            }
            let first = try number.read(low, key)
            let last = try number.read(high, key)
            guard first <= last else {
                throw FieldError(column: piece.column, message:
                    "gref range \(quoted(piece.text)) is reversed; expected A..B with A <= B")
            }
            return first...last
        }
    }
}

extension Field where Value == BlkifSegment {
    /// `GREF:FIRST-LAST`. Only the syntax and the u8 ranges are checked here:
    /// last_sect > 7 or reversed sectors are for the backend to refuse.
    static var segment: Field {
        Field { (piece, key) throws(FieldError) -> BlkifSegment in
            guard let (gref, sectors) = piece.split(at: ":"), let (first, last) = sectors.split(at: "-") else {
                throw FieldError(column: piece.column, message:
                    "\(quoted(piece.text)) is not a segment; expected \(key)=GREF:FIRST-LAST, e.g. \(key)=5:0-7")
            }
            return BlkifSegment(gref: try readInteger(gref, min: 0, max: UInt32.max, key: "\(key) gref"),
                                firstSect: try readInteger(first, min: 0, max: UInt8.max, key: "\(key) first_sect"),
                                lastSect: try readInteger(last, min: 0, max: UInt8.max, key: "\(key) last_sect"))
        }
    }
}

extension Field where Value == [UInt8] {
    /// Whole bytes as hex digits of either case.
    static var hex: Field {
        Field { (piece, key) throws(FieldError) -> [UInt8] in
            var bytes: [UInt8] = []
            var high: UInt8?
            var column = piece.column
            var digits = 0
            for scalar in piece.text.unicodeScalars {
                guard scalar.isASCII, let nibble = UInt8(scalar.value).hexDigitValue else {
                    throw FieldError(column: column, message:
                        "\(quoted(String(scalar))) is not a hex digit in '\(key)'; expected 0-9, a-f or A-F")
                }
                if let first = high {
                    bytes.append(first << 4 | nibble)
                    high = nil
                } else {
                    high = nibble
                }
                column += 1
                digits += 1
            }
            guard high == nil else {
                throw FieldError(column: piece.column, message:
                    "'\(key)' has \(digits) hex digits, an odd count; expected two digits per byte")
            }
            return bytes
        }
    }
}

extension Field where Value == UInt8 {
    /// `op=`: a name, or any opcode as a number (unknown ones included, on purpose).
    static var operation: Field {
        Field { (piece, key) throws(FieldError) -> UInt8 in
            if let operation = BlkifOperation(traceName: String(piece.text)) { return operation.rawValue }
            guard UnsignedLexeme(piece.text) != .notANumber else {
                throw FieldError(column: piece.column, message:
                    "unknown operation \(quoted(piece.text)) for '\(key)'; expected read, write, barrier, flush, discard or a number 0..255")
            }
            return try Field.integer().read(piece, key)
        }
    }
}

extension Field where Value == GrantStatus {
    /// A failing `GNTST_*` status by name or by number (negative).
    static var faultStatus: Field {
        Field { (piece, key) throws(FieldError) -> GrantStatus in
            let names = GrantStatus.allCases.filter { $0 != .okay }.map(\.traceName).joined(separator: ", ")
            let status: GrantStatus?
            if let named = GrantStatus(traceName: String(piece.text)) {
                status = named
            } else {
                let negative = piece.text.hasPrefix("-")
                if case let .value(magnitude) = UnsignedLexeme(negative ? piece.text.dropFirst() : piece.text),
                   let code = Int16(exactly: magnitude) {
                    status = GrantStatus(rawValue: negative ? -code : code)
                } else {
                    status = nil
                }
            }
            guard let status else {
                throw FieldError(column: piece.column, message:
                    "unknown grant status \(quoted(piece.text)) for '\(key)'; expected one of \(names) or a number -1..-13")
            }
            guard status != .okay else {
                throw FieldError(column: piece.column, message:
                    "\(key)=\(piece.text) is no fault; expected a failing grant status such as general_error or -1")
            }
            return status
        }
    }
}

extension Field where Value == BlkifResponseStatus {
    static var responseStatus: Field {
        Field { (piece, key) throws(FieldError) -> BlkifResponseStatus in
            guard let status = BlkifResponseStatus(traceName: String(piece.text)) else {
                throw FieldError(column: piece.column, message:
                    "unknown response status \(quoted(piece.text)) for '\(key)'; expected okay, error or eopnotsupp")
            }
            return status
        }
    }
}

extension Field where Value == BlkifProtocol {
    static var protocolName: Field {
        Field { (piece, key) throws(FieldError) -> BlkifProtocol in
            guard let name = BlkifProtocol(rawValue: String(piece.text)) else {
                throw FieldError(column: piece.column, message:
                    "unknown protocol \(quoted(piece.text)) for '\(key)'; expected native, x86_32 or x86_64")
            }
            return name
        }
    }
}

extension Field where Value == CheckID {
    static var check: Field {
        Field { (piece, _) throws(FieldError) -> CheckID in
            guard let check = CheckID(rawValue: String(piece.text)) else {
                throw FieldError(column: piece.column, message:
                    "unknown check \(quoted(piece.text)); " + expectedOne(of: CheckID.allCases.map(\.rawValue)))
            }
            return check
        }
    }
}

extension Field where Value == String {
    /// A name made of the given ASCII characters only, so it prints back unchanged.
    static func word(_ what: String, allowed: String, describedAs description: String) -> Field {
        let allowedScalars = Set(allowed.unicodeScalars)
        return Field { (piece, key) throws(FieldError) -> String in
            var column = piece.column
            for scalar in piece.text.unicodeScalars {
                guard allowedScalars.contains(scalar) else {
                    throw FieldError(column: column, message:
                        "\(quoted(String(scalar))) cannot appear in \(what) \(quoted(piece.text)); expected \(description)")
                }
                column += 1
            }
            return String(piece.text)
        }
    }

    static var lowerDigits: String { "abcdefghijklmnopqrstuvwxyz0123456789" }

    /// `backend=NAME`, NAME matching [a-z0-9_+.-]+ (`.` since `linux-3.11`).
    static var backendName: Field {
        word("the backend name", allowed: lowerDigits + "_+-.", describedAs: "a-z, 0-9, _, +, - or .")
    }

    /// A xenstore node name: [A-Za-z0-9-/_@]+.
    static var xenstoreKey: Field {
        word("the xenstore key", allowed: lowerDigits + "ABCDEFGHIJKLMNOPQRSTUVWXYZ-/_@",
             describedAs: "letters, digits, -, /, _ or @")
    }
}
