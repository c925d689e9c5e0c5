/// The trace formats `replay import` reads.
public enum ImportFormat: String, CaseIterable, Sendable {
    case blkparse, fio, msr, spc, alibaba, tencent

    /// Whether the trace says when each I/O completed, so the queue depth can follow it.
    public var hasCompletions: Bool { self == .blkparse || self == .msr }

    func parser(blkparseAction: BlkparseAction) -> any TraceLineParser {
        switch self {
        case .blkparse: BlkparseParser(action: blkparseAction)
        case .fio: FioLogParser()
        case .msr: MSRParser()
        case .spc: SPCParser()
        case .alibaba: AlibabaParser()
        case .tencent: TencentParser()
        }
    }
}
