import Oracle
import Trace

/// Operation counts of one run: the seed's point is fewer unmaps.
public struct ReplayStatistics: Hashable, Sendable {
    public var events = 0
    public var requests = 0
    public var segments = 0
    public var mapOps = 0
    public var unmapOps = 0
    public var mapHypercalls = 0
    public var unmapHypercalls = 0
    /// From the oracle's decisions; nil when it was off.
    public var oracle: OracleStatistics?

    public init() {}

    public mutating func add(_ other: ReplayStatistics) {
        events += other.events
        requests += other.requests
        segments += other.segments
        mapOps += other.mapOps
        unmapOps += other.unmapOps
        mapHypercalls += other.mapHypercalls
        unmapHypercalls += other.unmapHypercalls
        if let theirs = other.oracle {
            var mine = oracle ?? OracleStatistics()
            mine.persistentHits += theirs.persistentHits
            mine.newPersistent += theirs.newPersistent
            mine.oneOff += theirs.oneOff
            mine.overflowed += theirs.overflowed
            oracle = mine
        }
    }
}

/// A violation as a report keeps it: which event (by order) it came at.
public struct ReportedViolation: Hashable, Sendable {
    public let violation: Violation
    public let eventIndex: Int
}

/// The outcome of replaying one trace under one backend.
public struct ReplayReport: Sendable {
    public let file: String
    public let backend: String
    public internal(set) var statistics = ReplayStatistics()
    /// The first violations, in order (at most `keptViolations`).
    public internal(set) var violations: [ReportedViolation] = []
    public internal(set) var violationCount = 0
    /// Expected violations that apply to this backend.
    public internal(set) var expectedChecks: Set<CheckID> = []
    public internal(set) var traceError: TraceError?
    /// What the trace says that cannot mean what its author meant, though the
    /// format allows it (an `expect violation` naming no backend). A warning
    /// does not change the verdict.
    public internal(set) var warnings: [TraceError] = []
    public internal(set) var panicked = false
    public static let keptViolations = 200

    init(file: String, backend: String) {
        self.file = file
        self.backend = backend
    }

    mutating func warn(_ warning: TraceError) { warnings.append(warning) }

    mutating func record(_ violation: Violation, eventIndex: Int) {
        violationCount += 1
        if violations.count < Self.keptViolations {
            violations.append(ReportedViolation(violation: violation, eventIndex: eventIndex))
        }
    }

    public var checksSeen: Set<CheckID> { Set(violations.map(\.violation.check)) }

    public enum Verdict: Hashable, Sendable {
        case pass
        /// The trace could not be read or is not a valid run.
        case error
        case fail
    }

    /// A trace passes when nothing is violated, or — when it expects
    /// violations under this backend — when each of them was seen and nothing
    /// else went wrong before the first of them.
    public var verdict: Verdict {
        if traceError != nil { return .error }
        if expectedChecks.isEmpty { return violations.isEmpty ? .pass : .fail }
        return missingExpectedChecks.isEmpty && failingViolations.isEmpty ? .pass : .fail
    }

    public var missingExpectedChecks: [CheckID] {
        CheckID.allCases.filter { expectedChecks.contains($0) && !checksSeen.contains($0) }
    }

    /// The violations that make the trace fail.
    public var failingViolations: [ReportedViolation] {
        if expectedChecks.isEmpty { return violations }
        guard let first = violations.first(where: { expectedChecks.contains($0.violation.check) }) else { return violations }
        return violations.filter { $0.eventIndex < first.eventIndex }
    }
}
