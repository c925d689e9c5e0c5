import Blkif
import FakeXen
import Trace

/// One function per check id, each stating its rule and appending what
/// breaks it to the event's findings, from a prediction and what was
/// observed. (Appending into one list, not returning one: almost every check
/// finds nothing on almost every event, and an empty list handed back by
/// each of the dozen calls per event cost a release each.)
///
/// - EnvironmentChecks.swift: `use-after-free`, `double-free`, `panic`,
///   `access-unmapped`, `unmap-in-use`, `host-leak` (never allowed; nothing
///   to predict)
/// - ConnectionChecks.swift: `negotiation`, `teardown`
/// - MappingChecks.swift: `map-ops`, `unmap-ops`, `unmap-bitmap`, `request-leak`
/// - RequestChecks.swift: `response`, `data`, `overflow-alert`
/// - ResponseSlotChecks.swift: `response-slot`
/// - TreeChecks.swift: `tree-count`, `grant-limit`, `tree-order`,
///   `tree-balance`, `tree-contents`, `tree-mapping`
///
/// `expect` is not the oracle's: the harness reports it from a trace's own
/// `expect` lines.
enum Checks {}

/// What a check found wrong, before the oracle places it in the event's report.
struct Finding: Hashable {
    let check: CheckID
    let section: ReportSection
    let expected: String
    let seen: String

    init(_ check: CheckID, in section: ReportSection, expected: String, seen: String) {
        self.check = check
        self.section = section
        self.expected = expected
        self.seen = seen
    }
}

/// Where a finding stands in its event's report. Reports list an event's
/// findings grouped by what they are about, in this order, and within a
/// group in the order they were found. The order shows (verbose output,
/// JSON, the first violation a minimizer keeps), so it is fixed here rather
/// than left to the order the checks happen to run in.
enum ReportSection: Hashable, Comparable {
    /// An alarm of the environment, by its place among the event's observations.
    case environment(at: Int)
    /// The connection the event made or ended: its negotiated mode, what a disconnect left.
    case connection
    case mapOps
    case alerts
    case responses
    case unmapBitmaps
    /// The unmap ops, then handles that should have been unmapped and were not.
    case unmapOps
    case data
    case leaks
    /// The connection a connect or request acted on, and its tree.
    case tree

    /// The findings in report order: by section, then as found.
    static func reportOrder(_ findings: [Finding]) -> [Finding] {
        guard findings.count > 1 else { return findings }
        return findings.enumerated()
            .sorted { ($0.element.section, $0.offset) < ($1.element.section, $1.offset) }
            .map(\.element)
    }
}

/// How findings word lists, bitmaps, tokens and statuses.
enum Wording {
    static func list(_ items: [String], limit: Int = 6) -> String {
        let shown = items.prefix(limit).joined(separator: ", ")
        return items.count > limit ? shown + " and \(items.count - limit) more" : shown
    }

    static func handles(_ handles: Set<GrantHandle>) -> String {
        handles.sorted().map(String.init).joined(separator: ", ")
    }

    static func bits(_ bitmap: UInt16) -> String {
        let set = (0..<16).filter { bitmap & (1 << $0) != 0 }
        return set.isEmpty ? "{}" : "{" + set.map(String.init).joined(separator: ",") + "}"
    }

    static func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

    /// Byte offsets as runs: "9, 12-15".
    static func byteRuns(_ offsets: [Int]) -> String {
        guard var start = offsets.first else { return "" }
        var runs: [String] = []
        var previous = start
        for offset in offsets.dropFirst() + [Int.max] {
            if offset == previous + 1 { previous = offset; continue }
            runs.append(start == previous ? "\(start)" : "\(start)-\(previous)")
            start = offset
            previous = offset
        }
        return runs.joined(separator: ", ")
    }

    /// The bytes of a response slot at `offsets`, in two-digit hex: "90 5c 3a".
    static func bytes(of write: ResponseSlotWrite, at offsets: [Int]) -> String {
        TextTracePrinter.hex(offsets.map(write.byte), separator: " ")
    }

    static func status(_ status: Int16) -> String {
        BlkifResponseStatus(rawValue: status)?.traceName ?? "\(status)"
    }
}
