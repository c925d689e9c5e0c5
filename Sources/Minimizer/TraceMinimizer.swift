import Backend
import Blkif
import Harness
import Oracle
import Trace

/// Shrinks a failing trace to a smallest one that still fails with the same
/// first check under the same backend: it removes events (in chunks, then one
/// by one), then simplifies the arguments of the events left, and repeats
/// until nothing more goes. Every candidate is replayed; candidates that are
/// not valid traces (a trace error) or fail otherwise are rejected.
///
/// A trace that crashes the model (a trap in the backend, the fake or the
/// oracle) is minimized too: then every candidate is replayed in a forked
/// child process, and "still fails" means "still crashes".
public struct TraceMinimizer {
    public let variant: BackendVariant
    public let options: ReplayOptions
    /// Replays allowed in all; the result is the smallest trace found by then.
    public let maxReplays: Int
    /// Whether the first replay runs in a forked child, so that a trace that
    /// crashes can be minimized. Fork only from a single-threaded process
    /// (the `replay` tool); tests running in parallel pass false.
    public let isolatesCrashes: Bool

    public init(variant: BackendVariant, options: ReplayOptions = ReplayOptions(), maxReplays: Int = 50_000,
                isolatesCrashes: Bool = true) {
        self.variant = variant
        self.options = options
        self.maxReplays = maxReplays
        self.isolatesCrashes = isolatesCrashes
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case traceError(TraceError)
        case passes(backend: String)
        /// It fails only because an expected violation is missing: nothing to keep failing.
        case onlyMissingExpectation(backend: String)

        public var description: String {
            switch self {
            case .traceError(let error): "the trace is not valid: \(error.description)"
            case .passes(let backend): "the trace passes under \(backend); there is no failure to keep"
            case .onlyMissingExpectation(let backend):
                "the trace fails under \(backend) only because an expected violation is missing; there is no violation to keep"
            }
        }
    }

    /// How one replay ends.
    public enum Outcome: Hashable, Sendable, CustomStringConvertible {
        case pass
        case traceError
        case missingExpectation
        /// The first failing violation's check.
        case violation(CheckID)
        /// The replay killed its process with this signal.
        case crash(signal: Int32)

        public var description: String {
            switch self {
            case .pass: "pass"
            case .traceError: "trace error"
            case .missingExpectation: "an expected violation missing"
            case .violation(let check): check.rawValue
            case .crash(let signal): "a crash (signal \(signal))"
            }
        }
    }

    public struct Result: Sendable {
        /// The minimal trace.
        public var events: [TraceEventKind]
        public var originalCount: Int
        /// What the original and the minimal trace both do: a violation of one check, or a crash.
        public var outcome: Outcome
        /// The first failing violation of the minimal trace; nil for a crash.
        public var violation: Violation?
        public var replays: Int
        /// False when the replay budget ran out first.
        public var complete: Bool
    }

    /// The first failing violation of a replay, when the verdict is a failure (in process).
    public func firstFailure(_ events: [TraceEventKind]) -> (report: ReplayReport, violation: Violation?) {
        let report = TraceRunner.replay(.events(events, name: "minimize"), variant: variant, options: options)
        guard report.verdict == .fail else { return (report, nil) }
        return (report, report.failingViolations.first?.violation)
    }

    /// How a replay ends, in this process (a crash takes the process down).
    public func outcome(_ events: [TraceEventKind]) -> Outcome {
        let (report, first) = firstFailure(events)
        if report.traceError != nil { return .traceError }
        switch report.verdict {
        case .pass: return .pass
        case .error: return .traceError
        case .fail: return first.map { .violation($0.check) } ?? .missingExpectation
        }
    }

    /// How a replay ends, in a child process, so that a crash is an answer.
    public func isolatedOutcome(_ events: [TraceEventKind]) -> Outcome {
        switch CrashIsolation.run(encodingResult: { Self.exitCode(of: outcome(events)) }) {
        case .exited(let code): Self.outcome(ofExitCode: code) ?? .crash(signal: 0)
        case .signalled(let signal): .crash(signal: signal)
        case .unavailable: outcome(events)   // no child process: in process, as best we can
        }
    }

    /// An outcome as a child's exit code: 0 pass, 2 trace error, 3 missing
    /// expectation, 10 + the check's index for a violation.
    static func exitCode(of outcome: Outcome) -> Int32 {
        switch outcome {
        case .pass: 0
        case .traceError: 2
        case .missingExpectation: 3
        case .violation(let check): 10 + Int32(CheckID.allCases.firstIndex(of: check)!)
        case .crash: 4
        }
    }

    static func outcome(ofExitCode code: Int32) -> Outcome? {
        switch code {
        case 0: .pass
        case 2: .traceError
        case 3: .missingExpectation
        case 10..<(10 + Int32(CheckID.allCases.count)): .violation(CheckID.allCases[Int(code - 10)])
        default: nil
        }
    }

    public func minimize(_ events: [TraceEventKind]) throws(Failure) -> Result {
        // The first replay runs apart, in case it crashes.
        let original = isolatesCrashes ? isolatedOutcome(events) : outcome(events)
        switch original {
        case .pass: throw .passes(backend: variant.name)
        case .traceError:
            let report = TraceRunner.replay(.events(events, name: "minimize"), variant: variant, options: options)
            throw .traceError(report.traceError ?? TraceError(file: "minimize", position: .line(0, column: 0),
                                                              message: "not a valid trace"))
        case .missingExpectation: throw .onlyMissingExpectation(backend: variant.name)
        case .violation, .crash: break
        }
        var isolated = false
        if case .crash = original { isolated = true }
        var run = Run(minimizer: self, target: original, isolated: isolated, current: events)
        run.shrink()
        let violation = isolated ? nil : firstFailure(run.current).violation
        return Result(events: run.current, originalCount: events.count, outcome: original,
                      violation: violation, replays: run.replays, complete: run.replays < maxReplays)
    }

    /// One minimization in progress.
    struct Run {
        let minimizer: TraceMinimizer
        let target: Outcome
        let isolated: Bool
        var current: [TraceEventKind]
        var replays = 0

        var exhausted: Bool { replays >= minimizer.maxReplays }

        /// Whether the candidate still fails the same way (the same first check, or a crash).
        mutating func stillFails(_ candidate: [TraceEventKind]) -> Bool {
            guard !exhausted else { return false }
            replays += 1
            let outcome = isolated ? minimizer.isolatedOutcome(candidate) : minimizer.outcome(candidate)
            if case .crash = target, case .crash = outcome { return true }
            return outcome == target
        }

        mutating func shrink() {
            var changed = true
            while changed && !exhausted {
                changed = removeChunks()
                changed = simplifyEach() || changed
                changed = renumberIDs() || changed
                changed = renumberVbds() || changed
            }
        }

        /// Removes runs of events, halving the run length down to one.
        mutating func removeChunks() -> Bool {
            var changed = false
            var chunk = max(current.count / 2, 1)
            while chunk >= 1 && !exhausted {
                var start = 0
                while start < current.count && !exhausted {
                    let end = min(start + chunk, current.count)
                    let candidate = Array(current[..<start] + current[end...])
                    if stillFails(candidate) {
                        current = candidate
                        changed = true
                    } else {
                        start += chunk
                    }
                }
                chunk /= 2
            }
            return changed
        }

        /// Tries simpler forms of each event, keeping the first that still fails.
        mutating func simplifyEach() -> Bool {
            var changed = false
            var index = 0
            while index < current.count && !exhausted {
                var progress = true
                while progress && !exhausted {
                    progress = false
                    for candidate in TraceMinimizer.simplifications(of: current, at: index) where stillFails(candidate) {
                        current = candidate
                        changed = true
                        progress = index < current.count
                        break
                    }
                }
                index += 1
            }
            return changed
        }

        /// Vbds 0, 1, 2… by first connect.
        mutating func renumberVbds() -> Bool {
            var numbers: [UInt16: UInt16] = [:]
            for event in current {
                if case .connect(let connect) = event, numbers[connect.vbd] == nil {
                    numbers[connect.vbd] = UInt16(numbers.count)
                }
            }
            guard numbers.contains(where: { $0.key != $0.value }) else { return false }
            let candidate = current.map { $0.onVbd { numbers[$0] ?? $0 } }
            guard stillFails(candidate) else { return false }
            current = candidate
            return true
        }

        /// Request ids 1, 2, 3… by first appearance, completes following.
        mutating func renumberIDs() -> Bool {
            var numbers: [UInt64: UInt64] = [:]
            for event in current {
                if case .request(let request) = event, numbers[request.id] == nil {
                    numbers[request.id] = UInt64(numbers.count + 1)
                }
                if case .indirect(let request) = event, numbers[request.id] == nil {
                    numbers[request.id] = UInt64(numbers.count + 1)
                }
            }
            guard numbers.contains(where: { $0.key != $0.value }) else { return false }
            let candidate = current.map { event -> TraceEventKind in
                switch event {
                case .request(var request):
                    request.id = numbers[request.id] ?? request.id
                    return .request(request)
                case .indirect(var request):
                    request.id = numbers[request.id] ?? request.id
                    return .indirect(request)
                case let .complete(id, vbd):
                    return .complete(id: numbers[id] ?? id, vbd: vbd)
                case let .expect(.response(id, status), vbd):
                    return .expect(.response(id: numbers[id] ?? id, status: status), vbd: vbd)
                default:
                    return event
                }
            }
            guard stillFails(candidate) else { return false }
            current = candidate
            return true
        }
    }

    // MARK: simpler forms

    /// Candidate traces in which the event at `index` is simpler, simplest first.
    static func simplifications(of events: [TraceEventKind], at index: Int) -> [[TraceEventKind]] {
        var candidates: [[TraceEventKind]] = []
        func replace(_ kinds: TraceEventKind...) {
            var copy = events
            copy.replaceSubrange(index...index, with: kinds)
            candidates.append(copy)
        }
        /// The trace with the hold of the request at `index` dropped,
        /// together with the complete that ends it.
        func unheld(_ plain: TraceEventKind, id: UInt64, vbd: UInt16) -> [TraceEventKind] {
            var copy = events
            copy[index] = plain
            if let later = copy[(index + 1)...].firstIndex(where: {
                if case let .complete(completed, on) = $0 { completed == id && on == vbd } else { false }
            }) {
                copy.remove(at: later)
            }
            return copy
        }
        switch events[index] {
        case .request(let request):
            if request.hold {
                var plain = request
                plain.hold = false
                candidates.append(unheld(.request(plain), id: request.id, vbd: request.vbd))
            }
            for variant in simplerRequests(request) { replace(.request(variant)) }
        case .indirect(let request):
            if request.hold {
                var plain = request
                plain.hold = false
                candidates.append(unheld(.indirect(plain), id: request.id, vbd: request.vbd))
            }
            for variant in simplerIndirectRequests(request) { replace(.indirect(variant)) }
        case .write(let write):
            // Fewer bytes (halves, then one less), then the write landing at once.
            for count in smallerCounts(write.bytes.count) {
                var copy = write
                copy.bytes = Array(write.bytes.prefix(count))
                replace(.write(copy))
            }
            if let reads = write.afterReads {
                for smaller in smallerCounts(reads) {
                    var copy = write
                    copy.afterReads = smaller
                    replace(.write(copy))
                }
            }
        case .tick(let milliseconds):
            for smaller in smallerCounts(Int(clamping: milliseconds)) { replace(.tick(milliseconds: UInt64(smaller))) }
        case .raw(let raw):
            if let protocolName = TraceState(after: events[..<index]).ringProtocol(ofVbd: raw.vbd),
               let decoded = try? protocolName.decodeRequest(raw.bytes) {
                replace(.request(RequestEvent(fieldsOf: decoded, vbd: raw.vbd, hold: raw.hold)))
            }
        case .connect(let connect):
            var defaults = ConnectEvent(domid: connect.domid, persistent: connect.persistent, vbd: connect.vbd)
            defaults.maxPersistent = connect.maxPersistent
            if defaults != connect { replace(.connect(defaults)) }
            var each = connect
            if each.protocolName != .native { each.protocolName = .native; replace(.connect(each)); each = connect }
            if !each.backendPersistent { each.backendPersistent = true; replace(.connect(each)); each = connect }
            if each.sectors != defaults.sectors { each.sectors = defaults.sectors; replace(.connect(each)); each = connect }
            if !each.flush { each.flush = true; replace(.connect(each)); each = connect }
            if each.discard { each.discard = false; replace(.connect(each)); each = connect }
            if each.maxPersistent != nil { each.maxPersistent = nil; replace(.connect(each)); each = connect }
            if each.persistent == nil { each.persistent = true; replace(.connect(each)) }
        case .grant(let grant):
            for grefs in narrower(grant.grefs) {
                var copy = grant
                copy.grefs = grefs
                replace(.grant(copy))
            }
            if grant.readOnly {
                var copy = grant
                copy.readOnly = false
                replace(.grant(copy))
            }
        case .revoke(let revoke):
            for grefs in narrower(revoke.grefs) {
                var copy = revoke
                copy.grefs = grefs
                replace(.revoke(copy))
            }
        case .fail(let fault):
            switch fault {
            case let .mapGref(gref, times, status):
                if times > 1 { replace(.fail(.mapGref(gref: gref, times: 1, status: status))) }
                if status != .generalError { replace(.fail(.mapGref(gref: gref, times: times, status: .generalError))) }
            case let .mapNth(nth, status):
                for smaller in smallerCounts(nth) { replace(.fail(.mapNth(nth: smaller, status: status))) }
                if status != .generalError { replace(.fail(.mapNth(nth: nth, status: .generalError))) }
            case .allocNth(let nth):
                for smaller in smallerCounts(nth) { replace(.fail(.allocNth(nth: smaller))) }
            case .hypercallNth(let nth):
                for smaller in smallerCounts(nth) { replace(.fail(.hypercallNth(nth: smaller))) }
            }
        case .frontendKey, .complete, .disconnect, .expect, .parameter, .generations:
            break
        }
        return candidates
    }

    /// An indirect request with fewer descriptors (half, then each one
    /// from the end), no lie in `nr=`, sector and handle 0, whole-page
    /// descriptors, and only the pages the descriptors need.
    static func simplerIndirectRequests(_ request: IndirectRequestEvent) -> [IndirectRequestEvent] {
        var variants: [IndirectRequestEvent] = []
        func with(_ change: (inout IndirectRequestEvent) -> Void) {
            var copy = request
            change(&copy)
            if copy != request, !variants.contains(copy) { variants.append(copy) }
        }
        let count = request.segments.count
        if count > 1 { with { $0.segments.removeLast(count / 2) } }
        for index in request.segments.indices.reversed().prefix(16) {
            with { $0.segments.remove(at: index) }
        }
        if request.nrSegments != nil { with { $0.nrSegments = nil } }
        if request.sector != 0 { with { $0.sector = 0 } }
        if request.handle != 0 { with { $0.handle = 0 } }
        let needed = Blkif.indirectPages(forSegments: count)
        if request.pages.count > needed { with { $0.pages.removeLast(request.pages.count - needed) } }
        with { copy in
            for index in copy.segments.indices { copy.segments[index].firstSect = 0; copy.segments[index].lastSect = 7 }
        }
        return variants
    }

    static func simplerRequests(_ request: RequestEvent) -> [RequestEvent] {
        var variants: [RequestEvent] = []
        func with(_ change: (inout RequestEvent) -> Void) {
            var copy = request
            change(&copy)
            if copy != request { variants.append(copy) }
        }
        for index in request.segments.indices.reversed() {
            with { $0.segments.remove(at: index) }
        }
        if let nr = request.nrSegments {
            with { $0.nrSegments = nil }
            // A smaller lie: fewer zero slots read past the carried segments.
            for smaller in smallerCounts(Int(nr)) where smaller > request.segments.count {
                with { $0.nrSegments = UInt8(smaller) }
            }
        }
        if request.sector != 0 { with { $0.sector = 0 } }
        if request.handle != 0 { with { $0.handle = 0 } }
        if let sectors = request.nrSectors, sectors > 1 { with { $0.nrSectors = 1 } }
        for index in request.segments.indices where request.segments[index].firstSect != 0 || request.segments[index].lastSect != 7 {
            with { $0.segments[index].firstSect = 0; $0.segments[index].lastSect = 7 }
        }
        return variants
    }

    static func narrower(_ grefs: ClosedRange<UInt32>) -> [ClosedRange<UInt32>] {
        guard grefs.count > 1 else { return [] }
        let middle = grefs.lowerBound + UInt32(grefs.count / 2)
        return [grefs.lowerBound...grefs.lowerBound, grefs.upperBound...grefs.upperBound,
                grefs.lowerBound...(middle - 1), middle...grefs.upperBound,
                grefs.lowerBound...(grefs.upperBound - 1), (grefs.lowerBound + 1)...grefs.upperBound]
    }

    static func smallerCounts(_ count: Int) -> [Int] {
        guard count > 1 else { return [] }
        return Array(Set([1, count / 2, count - 1])).filter { $0 >= 1 && $0 < count }.sorted()
    }
}
