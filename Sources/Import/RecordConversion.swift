import Recording

/// A record as the ring will carry it: its operation and whole sectors.
struct ConvertedRecord {
    let kind: IORecord.Kind
    /// Empty for a flush.
    let range: SectorRange
    let preflush: Bool
    /// A trim cut to `maxTrimBytes`.
    let clipped: Bool
}

/// Decides what becomes of each record, the same way in every pass: left
/// out (and why), refused (an error), or converted to sectors.
struct RecordConversion {
    enum Outcome {
        case skip(SkipReason)
        case convert(ConvertedRecord)
    }

    let options: ImportOptions

    func outcome(_ record: IORecord) throws(LineProblem) -> Outcome {
        if let device = options.device, record.device != device { return .skip(.otherDevice) }
        switch record.kind {
        case .flush:
            return .convert(ConvertedRecord(kind: .flush, range: SectorRange(start: 0, end: 0, adjusted: false),
                                            preflush: false, clipped: false))
        case .read, .write:
            guard record.length > 0 else { return .skip(.zeroLength) }
            guard record.length <= options.maxIOBytes else {
                throw LineProblem("an I/O of \(record.length) bytes: more than the \(options.maxIOBytes) bytes one record may move")
            }
            guard let range = SectorRange.widened(offset: record.offset, length: record.length) else {
                throw LineProblem("offset \(record.offset) + length \(record.length) overflows 64 bits")
            }
            if let disk = options.diskSectors, range.end > disk { return .skip(.beyondDisk) }
            return .convert(ConvertedRecord(kind: record.kind, range: range, preflush: record.preflush, clipped: false))
        case .discard:
            guard record.length > 0 else { return .skip(.zeroLength) }
            let clipped = record.length > options.maxTrimBytes
            guard let range = SectorRange.narrowed(offset: record.offset, length: min(record.length, options.maxTrimBytes)) else {
                throw LineProblem("offset \(record.offset) + length \(record.length) overflows 64 bits")
            }
            guard range.count > 0 else { return .skip(.smallTrim) }
            if let disk = options.diskSectors, range.end > disk { return .skip(.beyondDisk) }
            return .convert(ConvertedRecord(kind: .discard, range: range, preflush: false, clipped: clipped))
        }
    }
}
