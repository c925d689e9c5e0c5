import Blkif

/// Reads the event lines a recorded workload is made of — `request`,
/// `complete`, `expect response` and `grant` — straight from the bytes of the
/// line: no String, token array or argument table per line.
///
/// It accepts only lines that are plainly well formed. On anything else (any
/// other event, an unknown or repeated key, a value that is not a plain
/// number, a number out of range, a missing key) it answers nil and the caller
/// hands the line to `EventParser`, which reads it or words the precise
/// error. Errors therefore stay exactly as `EventParser` gives them, and for
/// every line this accepts, `EventParser` gives the same event (the agreement
/// tests in TraceTests check both on random and malformed lines).
///
/// Tokens are cut as `LineSource.scan` cuts them: at spaces, tabs and carriage
/// returns, up to a `#`.
struct QuickEventLine {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var cursor: Int
    private let end: Int

    /// The event of `bytes[range]` (one line, without its line break) and the
    /// column of its keyword; nil when the precise parser must decide.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>,
                      latestDomid: UInt16?) -> (kind: TraceEventKind, column: Int)? {
        var column = 0
        guard let kind = kind(bytes, range, latestDomid: latestDomid, column: &column) else { return nil }
        return (kind, column)
    }

    /// The event of `bytes[range]` alone, its keyword's column in `column`.
    /// Callers that need no column take this: taking the event back out of
    /// an optional (event, column) pair copies it and then destroys the pair
    /// through the runtime, a few hundred instructions per line.
    static func kind(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>,
                     latestDomid: UInt16?, column: inout Int) -> TraceEventKind? {
        var line = QuickEventLine(bytes: bytes, cursor: range.lowerBound, end: range.upperBound)
        guard let keyword = line.nextToken() else { return nil }
        // Only spaces, tabs and carriage returns (one byte, one scalar each)
        // can stand before the keyword, so its column is its byte offset.
        column = keyword.lowerBound - range.lowerBound + 1
        switch keyword.count {
        case 7 where line.matches(keyword, "request"): return line.request()
        case 8 where line.matches(keyword, "complete"): return line.complete()
        case 6 where line.matches(keyword, "expect"): return line.expectResponse()
        case 5 where line.matches(keyword, "grant"): return line.grant(latestDomid: latestDomid)
        default: return nil
        }
    }

    // MARK: Tokens

    /// The next token's byte range; nil at the end of the line or at a `#`.
    private mutating func nextToken() -> Range<Int>? {
        while cursor < end, Self.isSeparator(bytes[cursor]) { cursor += 1 }
        guard cursor < end, bytes[cursor] != UInt8(ascii: "#") else {
            cursor = end
            return nil
        }
        let start = cursor
        while cursor < end {
            let byte = bytes[cursor]
            if Self.isSeparator(byte) { break }
            // A `#` ends the token and the line (the next call sees it and stops).
            if byte == UInt8(ascii: "#") { break }
            cursor += 1
        }
        return start..<cursor
    }

    private static func isSeparator(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }

    /// Records a field's value the first time the field appears; false (so the
    /// line goes to the precise parser, which words the error) when the field
    /// repeats or its value does not read.
    private func setOnce<Value>(_ field: inout Value?, _ value: Value?) -> Bool {
        guard field == nil, let value else { return false }
        field = value
        return true
    }

    private func matches(_ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let pattern = literal.utf8Start
        var offset = 0
        while offset < range.count {
            if bytes[range.lowerBound + offset] != pattern[offset] { return false }
            offset += 1
        }
        return true
    }

    private func firstIndex(of byte: UInt8, in range: Range<Int>) -> Int? {
        var index = range.lowerBound
        while index < range.upperBound {
            if bytes[index] == byte { return index }
            index += 1
        }
        return nil
    }

    /// A `key=value` token split at its first `=`; nil for a token without one (a flag).
    private func keyValue(_ token: Range<Int>) -> (key: Range<Int>, value: Range<Int>)? {
        guard let equals = firstIndex(of: UInt8(ascii: "="), in: token) else { return nil }
        return (token.lowerBound..<equals, (equals + 1)..<token.upperBound)
    }

    // MARK: Values

    /// `UnsignedLexeme`'s numbers (decimal, or `0x` and hex digits of either
    /// case); nil for anything else, an empty value and overflow alike.
    private func number(_ range: Range<Int>) -> UInt64? {
        var index = range.lowerBound
        var value: UInt64 = 0
        if range.count >= 2, bytes[index] == UInt8(ascii: "0"), bytes[index + 1] == UInt8(ascii: "x") {
            index += 2
            guard index < range.upperBound else { return nil }
            while index < range.upperBound {
                guard let nibble = bytes[index].hexDigitValue, value >> 60 == 0 else { return nil }
                value = value << 4 | UInt64(nibble)
                index += 1
            }
            return value
        }
        guard index < range.upperBound else { return nil }
        while index < range.upperBound {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (shifted, over1) = value.multipliedReportingOverflow(by: 10)
            let (sum, over2) = shifted.addingReportingOverflow(UInt64(digit))
            guard !over1, !over2 else { return nil }
            value = sum
            index += 1
        }
        return value
    }

    private func number<Value: FixedWidthInteger>(_ range: Range<Int>, as _: Value.Type) -> Value? {
        number(range).flatMap { Value(exactly: $0) }
    }

    /// `op=`: a name or a number 0..255, as `Field.operation` reads it.
    private func operation(_ range: Range<Int>) -> UInt8? {
        switch range.count {
        case 4 where matches(range, "read"): BlkifOperation.read.rawValue
        case 5 where matches(range, "write"): BlkifOperation.write.rawValue
        case 7 where matches(range, "barrier"): BlkifOperation.writeBarrier.rawValue
        case 5 where matches(range, "flush"): BlkifOperation.flushDiskcache.rawValue
        case 7 where matches(range, "discard"): BlkifOperation.discard.rawValue
        default: number(range, as: UInt8.self)
        }
    }

    /// `GREF:FIRST-LAST`, split at the first `:` and then the first `-`, as `Field.segment` splits it.
    private func segment(_ range: Range<Int>) -> BlkifSegment? {
        guard let colon = firstIndex(of: UInt8(ascii: ":"), in: range),
              let dash = firstIndex(of: UInt8(ascii: "-"), in: (colon + 1)..<range.upperBound),
              let gref = number(range.lowerBound..<colon, as: UInt32.self),
              let first = number((colon + 1)..<dash, as: UInt8.self),
              let last = number((dash + 1)..<range.upperBound, as: UInt8.self)
        else { return nil }
        return BlkifSegment(gref: gref, firstSect: first, lastSect: last)
    }

    private func responseStatus(_ range: Range<Int>) -> BlkifResponseStatus? {
        switch range.count {
        case 4 where matches(range, "okay"): .okay
        case 5 where matches(range, "error"): .error
        case 10 where matches(range, "eopnotsupp"): .eopnotsupp
        default: nil
        }
    }

    /// `N` or `A..B` with A <= B, split at the first `..`, as `Field.grefs` reads it.
    private func grefs(_ range: Range<Int>) -> ClosedRange<UInt32>? {
        var index = range.lowerBound
        while index + 1 < range.upperBound {
            if bytes[index] == UInt8(ascii: "."), bytes[index + 1] == UInt8(ascii: ".") {
                guard let first = number(range.lowerBound..<index, as: UInt32.self),
                      let last = number((index + 2)..<range.upperBound, as: UInt32.self),
                      first <= last
                else { return nil }
                return first...last
            }
            index += 1
        }
        return number(range, as: UInt32.self).map { $0...$0 }
    }

    // MARK: Events
    //
    // Each reads the remaining tokens in any order; a key seen twice, a key
    // the event does not take or a bad value gives nil.

    private mutating func request() -> TraceEventKind? {
        var id: UInt64?, operation: UInt8?, sector: UInt64?
        var nrSegments: UInt8?, nrSectors: UInt64?, handle: UInt16?, vbd: UInt16?
        var hold = false
        var segments: [BlkifSegment] = []
        while let token = nextToken() {
            guard let (key, value) = keyValue(token) else {
                guard !hold, matches(token, "hold") else { return nil }
                hold = true
                continue
            }
            switch key.count {
            case 2 where matches(key, "id"):
                guard setOnce(&id, number(value)) else { return nil }
            case 2 where matches(key, "op"):
                guard setOnce(&operation, self.operation(value)) else { return nil }
            case 6 where matches(key, "sector"):
                guard setOnce(&sector, number(value)) else { return nil }
            case 3 where matches(key, "seg"):
                guard segments.count < Blkif.maxSegmentsPerRequest, let segment = segment(value) else { return nil }
                if segments.isEmpty { segments.reserveCapacity(Blkif.maxSegmentsPerRequest) }
                segments.append(segment)
            case 2 where matches(key, "nr"):
                guard setOnce(&nrSegments, number(value, as: UInt8.self)) else { return nil }
            case 10 where matches(key, "nr-sectors"):
                guard setOnce(&nrSectors, number(value)) else { return nil }
            case 6 where matches(key, "handle"):
                guard setOnce(&handle, number(value, as: UInt16.self)) else { return nil }
            case 3 where matches(key, "vbd"):
                guard setOnce(&vbd, number(value, as: UInt16.self)) else { return nil }
            default:
                return nil
            }
        }
        guard let id, let operation, let sector else { return nil }
        // A discard carries nr-sectors and no segments, every other operation
        // the reverse; `EventParser` words the error for the other mixes.
        if operation == BlkifOperation.discard.rawValue ? !segments.isEmpty : nrSectors != nil { return nil }
        return .request(RequestEvent(id: id, operation: operation, sector: sector, segments: segments,
                                     nrSegments: nrSegments, nrSectors: nrSectors, handle: handle ?? 0,
                                     vbd: vbd ?? 0, hold: hold))
    }

    private mutating func complete() -> TraceEventKind? {
        var id: UInt64?, vbd: UInt16?
        while let token = nextToken() {
            guard let (key, value) = keyValue(token) else { return nil }
            switch key.count {
            case 2 where matches(key, "id"):
                guard setOnce(&id, number(value)) else { return nil }
            case 3 where matches(key, "vbd"):
                guard setOnce(&vbd, number(value, as: UInt16.self)) else { return nil }
            default:
                return nil
            }
        }
        guard let id else { return nil }
        return .complete(id: id, vbd: vbd ?? 0)
    }

    /// `expect response` only; the other expectations are rare.
    private mutating func expectResponse() -> TraceEventKind? {
        guard let form = nextToken(), matches(form, "response") else { return nil }
        var id: UInt64?, status: BlkifResponseStatus?, vbd: UInt16?
        while let token = nextToken() {
            guard let (key, value) = keyValue(token) else { return nil }
            switch key.count {
            case 2 where matches(key, "id"):
                guard setOnce(&id, number(value)) else { return nil }
            case 6 where matches(key, "status"):
                guard setOnce(&status, responseStatus(value)) else { return nil }
            case 3 where matches(key, "vbd"):
                guard setOnce(&vbd, number(value, as: UInt16.self)) else { return nil }
            default:
                return nil
            }
        }
        guard let id, let status else { return nil }
        return .expect(.response(id: id, status: status), vbd: vbd ?? 0)
    }

    private mutating func grant(latestDomid: UInt16?) -> TraceEventKind? {
        var grefs: ClosedRange<UInt32>?, domid: UInt16?
        var readOnly = false
        while let token = nextToken() {
            guard let (key, value) = keyValue(token) else {
                guard !readOnly, matches(token, "ro") else { return nil }
                readOnly = true
                continue
            }
            switch key.count {
            case 4 where matches(key, "gref"):
                guard setOnce(&grefs, self.grefs(value)) else { return nil }
            case 5 where matches(key, "domid"):
                guard domid == nil, let number = number(value, as: UInt16.self), (1...32767).contains(number) else {
                    return nil
                }
                domid = number
            default:
                return nil
            }
        }
        // Without `domid=` the latest connect's; before any, `EventParser` says so.
        guard let grefs, let domid = domid ?? latestDomid else { return nil }
        return .grant(GrantEvent(grefs: grefs, readOnly: readOnly, domid: domid))
    }
}
