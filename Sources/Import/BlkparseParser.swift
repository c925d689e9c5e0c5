/// Which blkparse action is the request stream.
public enum BlkparseAction: String, CaseIterable, Sendable {
    /// Queued: the I/O as the application asked for it (what fio and btreplay replay).
    case Q
    /// Issued to the driver, after merging: the closest to ring requests.
    case D
}

/// blkparse's default output: `MAJ,MIN CPU SEQ SECS.NSECS PID ACTION RWBS SECTOR + COUNT [COMM]`.
/// One action is the request stream (`Q`, queued: what fio and btreplay
/// replay; or `D`, issued to the driver after merging: the closest to ring
/// requests); `C` lines are completions; the other actions, `m N` messages
/// and the per-CPU and total summary at the end are skipped.
struct BlkparseParser: TraceLineParser {
    let action: BlkparseAction
    /// After the summary's first heading, every line belongs to it.
    var inSummary = false

    init(action: BlkparseAction) { self.action = action }

    mutating func parse(_ line: UnsafeBufferPointer<UInt8>) throws(LineProblem) -> TraceLine {
        if let reason = CommonLines.skipReason(line) { return .skip(reason) }
        let fields = LineFields(whitespaceSeparated: line)
        guard Self.isDevice(fields.bytes(0)) else {
            if inSummary || Self.isSummaryHeading(fields) {
                inSummary = true
                return .skip(.summary)
            }
            throw LineProblem("expected a blkparse event 'MAJ,MIN CPU SEQ SECS.NSECS PID ACTION RWBS SECTOR + COUNT [COMM]', found '\(LineFields.shown(String(decoding: line, as: UTF8.self)))'")
        }
        guard fields.count >= 6 else { throw LineProblem("a blkparse event has at least 6 fields (up to ACTION), found \(fields.count)") }
        let isCompletion = fields.equals(5, "C")
        if fields.equals(5, "m") { return .skip(.message) }
        guard isCompletion || fields.bytes(5).elementsEqual(action.rawValue.utf8) else { return .skip(.otherAction) }
        guard fields.count >= 7 else { throw LineProblem("a \(fields.text(5)) event needs RWBS after the action") }
        let device = fields.text(0)
        let time = try fields.scaled(3, "SECS.NSECS", fractionDigits: 9)
        let flags = try RWBS(fields.bytes(6), text: fields.text(6))
        var sector: UInt64 = 0
        var count: UInt64 = 0
        if fields.count >= 10 && fields.equals(8, "+") {
            sector = try fields.number(7, "SECTOR")
            count = try fields.number(9, "COUNT")
        } else if fields.count > 7 && fields.bytes(7).first != 0x5B {
            throw LineProblem("expected 'SECTOR + COUNT' after RWBS '\(fields.text(6))'")
        }
        if isCompletion { return .completion(device: device, sector: sector, sectors: count, time: time) }
        let offset = try sector.times(512, "SECTOR")
        let length = try count.times(512, "COUNT")
        if flags.discard {
            return .record(IORecord(device: device, kind: .discard, offset: offset, length: length, time: time))
        }
        if count == 0 {
            return flags.preflush ? .record(IORecord(device: device, kind: .flush, time: time)) : .skip(.noData)
        }
        guard flags.read || flags.write else { return .skip(.noData) }
        return .record(IORecord(device: device, kind: flags.read ? .read : .write, offset: offset, length: length,
                                preflush: flags.preflush && flags.write, time: time))
    }

    /// `MAJ,MIN`: digits, a comma, digits.
    static func isDevice(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let comma = bytes.firstIndex(of: 0x2C), comma > 0, comma < bytes.count - 1 else { return false }
        return bytes.indices.allSatisfy { $0 == comma || (0x30...0x39).contains(bytes[$0]) }
    }

    /// The first lines of blkparse's summary: `CPU0 (8,0):`, `Total (8,0):`,
    /// `Throughput (R/W): …`, `Events (8,0): …`, or any `Name: value` line.
    static func isSummaryHeading(_ fields: LineFields) -> Bool {
        let first = fields.text(0)
        return first.hasPrefix("CPU") || first == "Total" || first == "Throughput" || first == "Events"
            || first == "Skips:" || fields.line.contains(0x3A)
    }
}

/// The RWBS field: `F` first asks for a flush before the I/O; then `R`, `W`,
/// `D` (discard) or `N` (no data); then modifiers (`F` for FUA, `A`, `S`, `M`,
/// `E`…), which change nothing the ring carries.
struct RWBS {
    var preflush = false
    var read = false
    var write = false
    var discard = false

    init(_ bytes: UnsafeBufferPointer<UInt8>, text: String) throws(LineProblem) {
        var sawOperation = false
        for (index, byte) in bytes.enumerated() {
            switch byte {
            case UInt8(ascii: "F") where index == 0: preflush = true
            case UInt8(ascii: "R"): read = true; sawOperation = true
            case UInt8(ascii: "W"): write = true; sawOperation = true
            case UInt8(ascii: "D"): discard = true; sawOperation = true
            case UInt8(ascii: "N"): sawOperation = true
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): break
            default: throw LineProblem("RWBS '\(LineFields.shown(text))' holds a character that is not an upper-case letter")
            }
        }
        guard sawOperation || preflush else {
            throw LineProblem("RWBS '\(LineFields.shown(text))' names no read (R), write (W), discard (D), flush (F) or no-data (N)")
        }
    }
}
