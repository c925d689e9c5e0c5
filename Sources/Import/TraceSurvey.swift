/// The first pass: reads the whole file once to find its devices (in order
/// of first appearance: vbd 0, 1, …), how far each reaches (the disk must
/// cover it) and whether it trims (the disk then offers discard), and to
/// find any malformed line before a byte is written.
public struct TraceSurvey: Sendable {
    public private(set) var devices: [String] = []
    private var vbdOfDevice: [String: Int] = [:]
    /// Per vbd: the end of the furthest sector touched, and whether it trims.
    public private(set) var endSectors: [UInt64] = []
    public private(set) var trims: [Bool] = []
    public private(set) var lines = 0
    /// Whether the trace carries a clock (then the output is format version 2, with ticks).
    public private(set) var hasClock = false
    /// Whether the file is gzip-compressed (the survey's reader told).
    public private(set) var isCompressed = false

    static func take(path: String, options: ImportOptions, progress: ImportProgress?) throws(ImportError) -> TraceSurvey {
        var survey = TraceSurvey()
        let input = try InputLines(path: path)
        survey.isCompressed = input.isCompressed
        var parser = options.format.parser(blkparseAction: options.blkparseAction)
        let conversion = RecordConversion(options: options)
        var records = 0
        while records < options.maxRecords ?? .max,
              let line = try input.next({ (bytes) throws(LineProblem) -> TraceLine in try parser.parse(bytes) }) {
            if input.lineNumber & 0xFFFF == 0 { progress?.update(pass: 1, input: input) }
            guard case let .record(record) = line else { continue }
            records += 1
            if record.time != nil { survey.hasClock = true }
            let outcome: RecordConversion.Outcome
            do { outcome = try conversion.outcome(record) } catch {
                throw ImportError(file: path, line: input.lineNumber, error.message)
            }
            guard case let .convert(converted) = outcome else { continue }
            let vbd: Int
            if let known = survey.vbdOfDevice[record.device] {
                vbd = known
            } else {
                guard survey.devices.count < options.maxDevices else {
                    throw ImportError(file: path, line: input.lineNumber,
                                      "a device beyond the first \(options.maxDevices) ('\(LineFields.shown(record.device))'): import one at a time with --device")
                }
                vbd = survey.devices.count
                survey.vbdOfDevice[record.device] = vbd
                survey.devices.append(record.device)
                survey.endSectors.append(0)
                survey.trims.append(false)
            }
            survey.endSectors[vbd] = max(survey.endSectors[vbd], converted.range.end)
            if converted.kind == .discard { survey.trims[vbd] = true }
        }
        survey.lines = input.lineNumber
        if let device = options.device, survey.devices.isEmpty {
            throw ImportError(file: path, line: 0, "no I/O of device '\(device)' in the trace")
        }
        guard !survey.devices.isEmpty else { throw ImportError(file: path, line: 0, "the trace holds no I/O to import") }
        return survey
    }

    func vbd(of device: String) -> Int? { vbdOfDevice[device] }

    /// The disk of a vbd: as asked, or the trace's reach rounded up to a page.
    public func diskSectors(vbd: Int, options: ImportOptions) -> UInt64 {
        if let sectors = options.diskSectors { return sectors }
        let end = max(endSectors[vbd], 8)
        return (end + 7) / 8 * 8
    }
}
