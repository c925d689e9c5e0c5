/// fio's iolog, versions 2 and 3 (the first line says which). Version 2:
/// `FILE ACTION [OFFSET LENGTH]`, time passing only by `wait` lines (OFFSET
/// microseconds since the previous wait, as fio's HOWTO documents it; fio's
/// own replay code has since compared it with milliseconds since the job's
/// start: a v2 log written for that reading keeps its order here, not its pace); version 3: `TIMESTAMP FILE ACTION [OFFSET LENGTH]`, the
/// timestamp in microseconds since the start (fio writes `utime_since_now`),
/// `wait` ignored as fio ignores it. Offsets and lengths in bytes; `trim` is
/// a discard, `sync` and `datasync` flushes; `add`, `open` and `close` skipped.
/// The device is the file name.
struct FioLogParser: TraceLineParser {
    private(set) var version: Int?
    /// Version 2's clock: the sum of the waits so far, in nanoseconds.
    private var waited: UInt64 = 0

    mutating func parse(_ line: UnsafeBufferPointer<UInt8>) throws(LineProblem) -> TraceLine {
        if let reason = CommonLines.skipReason(line) { return .skip(reason) }
        let fields = LineFields(whitespaceSeparated: line)
        guard let version else {
            if fields.count == 4 && fields.equals(0, "fio") && fields.equals(1, "version") && fields.equals(3, "iolog") {
                if fields.equals(2, "2") { self.version = 2; return .skip(.header) }
                if fields.equals(2, "3") { self.version = 3; return .skip(.header) }
            }
            throw LineProblem("expected the header 'fio version 2 iolog' or 'fio version 3 iolog'")
        }
        let first = version == 3 ? 1 : 0
        guard fields.count >= first + 2 else {
            throw LineProblem(version == 3 ? "expected 'TIMESTAMP FILE ACTION [OFFSET LENGTH]'" : "expected 'FILE ACTION [OFFSET LENGTH]'")
        }
        let time = version == 3 ? try fields.number(0, "TIMESTAMP").times(1000, "TIMESTAMP") : waited
        let device = fields.text(first)
        let action = first + 1
        if fields.equals(action, "add") || fields.equals(action, "open") || fields.equals(action, "close") {
            return .skip(.fileAction)
        }
        if fields.equals(action, "sync") || fields.equals(action, "datasync") {
            return .record(IORecord(device: device, kind: .flush, time: time))
        }
        let kind: IORecord.Kind
        if fields.equals(action, "read") {
            kind = .read
        } else if fields.equals(action, "write") {
            kind = .write
        } else if fields.equals(action, "trim") {
            kind = .discard
        } else if fields.equals(action, "wait") {
            if version == 2 {
                guard fields.count >= action + 2 else { throw LineProblem("'wait' needs the microseconds to wait") }
                let (sum, overflow) = waited.addingReportingOverflow(try fields.number(action + 1, "wait").times(1000, "wait"))
                if overflow { throw LineProblem("the waits add up to more than 64 bits of nanoseconds") }
                waited = sum
            }
            return .skip(.wait)
        } else {
            throw LineProblem("unknown fio action '\(LineFields.shown(fields.text(action)))' (expected add, open, close, read, write, trim, sync, datasync or wait)")
        }
        guard fields.count >= action + 3 else { throw LineProblem("'\(fields.text(action))' needs OFFSET and LENGTH in bytes") }
        return .record(IORecord(device: device, kind: kind, offset: try fields.number(action + 1, "OFFSET"),
                                length: try fields.number(action + 2, "LENGTH"), time: time))
    }
}
