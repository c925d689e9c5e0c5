import Backend
import Blkif
import FakeXen
import Oracle
import Trace

/// Plays one trace against one backend: the harness is the guest (grants,
/// stamps data before writes), the toolstack (connects) and the clock
/// (completes held I/O); the oracle judges after every event.
public final class TraceRunner {
    public let variant: BackendVariant
    let options: ReplayOptions
    /// Everything an event changes, in one value: an event is applied in one
    /// access to it, not in one runtime exclusivity check per field touched.
    private var run: TraceRun
    /// Called after each event with the event and what was found (for `--verbose`).
    public var onEvent: ((TraceEvent, [Violation]) -> Void)?

    var xen: FakeXen { run.xen }
    var backend: Blkback { run.backend }
    var report: ReplayReport {
        get { run.report }
        _modify { yield &run.report }
    }
    /// The responses the backend published during the latest `apply`, in
    /// order, with their vbd (for the workload recorder).
    public var latestResponses: [(vbd: UInt16, response: BlkifResponse)] { run.latestResponses }

    public init(file: String, variant: BackendVariant, options: ReplayOptions = ReplayOptions()) {
        self.variant = variant
        self.options = options
        run = TraceRun(file: file, variant: variant, oracle: options.oracle ? ConformanceOracle() : nil)
    }

    /// Replays a whole source, tears down what is still connected, and reports.
    static func run(_ source: inout some TraceEventSource, variant: BackendVariant,
                           options: ReplayOptions = ReplayOptions(),
                           onEvent: ((TraceEvent, [Violation]) -> Void)? = nil) -> ReplayReport {
        // The run is a local value, not a runner's property: no one else can
        // reach it (the callback was made before it), so each event is applied
        // with no runtime exclusivity check of a class property.
        var run = TraceRun(file: source.file, variant: variant, oracle: options.oracle ? ConformanceOracle() : nil)
        let backend = run.backend
        do {
            while let event = try source.next() {
                if backend.panic != nil {
                    // The host is down: nothing more runs, but the rest of the
                    // trace is still read, for its syntax and for what it expects.
                    run.registerExpectation(event)
                    continue
                }
                let found = try run.apply(event)
                onEvent?(event, found)
            }
            run.finish(reporting: onEvent)
        } catch {
            run.report.traceError = error
        }
        return run.finalReport()
    }

    /// After a panic only `expect violation` lines still count.
    func registerExpectation(_ event: TraceEvent) { run.registerExpectation(event) }

    /// Whether the backend hit a `BUG()`: the host is down and nothing more runs.
    public var hasPanicked: Bool { backend.panic != nil }

    /// The number of persistent grants the backend publishes for `vbd`, nil when not connected.
    public func persistentCount(vbd: UInt16) -> Int? { backend.connectionSummary(vbd: vbd)?.persistentCount }

    public func finalReport() -> ReplayReport { run.finalReport() }

    /// The end of a trace is a disconnect of everything still connected.
    public func finish() {
        for event in run.closingDisconnects {
            try? apply(event)
            if backend.panic != nil { return }
        }
    }

    public func apply(_ event: TraceEvent) throws(TraceError) {
        let found = try run.apply(event)
        // Outside the access to `run`: the callback may ask the runner anything.
        onEvent?(event, found)
    }
}

/// One run's state and the steps of an event, as a value that `TraceRunner`
/// holds: its methods reach their fields statically, with no runtime
/// exclusivity check per field (the runner's stored properties each had one).
/// Nothing here calls back into the runner, so one access covers an event.
private struct TraceRun {
    let variant: BackendVariant
    let xen = FakeXen()
    let backend: Blkback
    let oracle: ConformanceOracle?
    /// The oracle's window on this run, made once (see `HarnessWorld`).
    private let world: HarnessWorld
    var report: ReplayReport
    var latestResponses: [(vbd: UInt16, response: BlkifResponse)] = []
    /// The event's publications as the oracle names them, rebuilt in place
    /// for every event (the oracle lets go of it by the next one).
    private var publicationsForOracle: [Publication] = []

    /// What the trace has set up: connected vbds, their protocols, held requests.
    private var state = TraceState()
    private var lastResponses = LatestResponseStatuses()
    private var frontendKeys: [String: String] = [:]
    private var nextToken: UInt64 = 0x7000_0000_0000_0000
    private var eventIndex = 0
    private var lastPosition: TracePosition = .line(0, column: 0)
    private var pendingExpectViolations: [Violation] = []

    init(file: String, variant: BackendVariant, oracle: ConformanceOracle?) {
        self.variant = variant
        backend = Blkback(variant: variant, xen: xen)
        self.oracle = oracle
        world = HarnessWorld(xen: xen, backend: backend)
        report = ReplayReport(file: file, backend: variant.name)
    }

    /// The end of a trace is a disconnect of everything still connected,
    /// judged as if it stood at the last event's position; none after a panic.
    var closingDisconnects: [TraceEvent] {
        guard backend.panic == nil else { return [] }
        return state.connectedVbds.map { TraceEvent(kind: .disconnect(vbd: $0), position: lastPosition) }
    }

    /// Applies the closing disconnects, stopping at a panic; `onEvent` hears
    /// of each as of any event. For a caller holding the run itself
    /// (`TraceRunner.run`); a runner calls its callback outside its access
    /// to the run instead (`TraceRunner.finish`).
    mutating func finish(reporting onEvent: ((TraceEvent, [Violation]) -> Void)?) {
        for event in closingDisconnects {
            if let found = try? apply(event) { onEvent?(event, found) }
            if backend.panic != nil { return }
        }
    }

    /// The report as it stands, with the oracle's statistics and whether the host went down.
    func finalReport() -> ReplayReport {
        var final = report
        final.statistics.oracle = oracle?.statistics
        final.panicked = backend.panic != nil
        return final
    }

    /// After a panic only `expect violation` lines still count.
    mutating func registerExpectation(_ event: TraceEvent) {
        if case let .expect(.violation(check, backendName), _) = event.kind,
           applies(backendName, at: event.position) {
            report.expectedChecks.insert(check)
        }
    }

    /// Whether an `expect violation … backend=NAME` line speaks of this
    /// backend. A NAME that is no backend at all (a misspelt quirk) never
    /// applies, as the format says; the report warns of it, since the line
    /// then guards nothing.
    private mutating func applies(_ backendName: String?, at position: TracePosition) -> Bool {
        guard let backendName else { return true }
        do {
            return try BackendVariant(name: backendName).name == variant.name
        } catch {
            report.warn(TraceError(file: report.file, position: position,
                                   message: "expect violation names no backend, so it never applies: \(error)"))
            return false
        }
    }

    /// Applies one event and judges it; returns what was found.
    mutating func apply(_ event: TraceEvent) throws(TraceError) -> [Violation] {
        lastPosition = event.position
        report.statistics.events += 1
        eventIndex += 1
        if let refusal = state.refusal(of: event.kind) {
            throw TraceError(file: report.file, position: event.position, message: refusal)
        }
        state.apply(event.kind)
        switch event.kind {
        case .frontendKey(let name, let value):
            frontendKeys[name] = value
        case .connect(let connect):
            if let persistent = connect.persistent { frontendKeys["feature-persistent"] = persistent ? "1" : "0" }
            let directory = Xenstore.frontendDirectory(domid: connect.domid, vbd: connect.vbd)
            for (name, value) in frontendKeys { xen.xenstore.write(directory + "/" + name, value) }
            backend.connect(ConnectParameters(domid: connect.domid, vbd: connect.vbd, ringProtocol: connect.protocolName,
                                              offersPersistent: connect.backendPersistent,
                                              maxPersistent: connect.maxPersistent, sectors: connect.sectors,
                                              flush: connect.flush, discard: connect.discard))
        case .grant(let grant):
            for gref in grant.grefs { xen.grants.grant(domid: grant.domid, gref: gref, readOnly: grant.readOnly) }
        case .revoke(let revoke):
            for gref in revoke.grefs { xen.grants.revoke(domid: revoke.domid, gref: gref) }
        case .fail(let fault):
            switch fault {
            case let .mapGref(gref, times, status): xen.faults.failMap(gref: gref, times: times, status: status)
            case let .mapNth(nth, status): xen.faults.failMap(nth: nth, status: status)
            case .allocNth(let nth): xen.faults.failAllocation(nth: nth)
            case .hypercallNth(let nth): xen.faults.failHypercall(nth: nth)
            }
        case .request(let request):
            // The request as the backend decodes the slot its encoding fills:
            // the fields the event carries, with nothing lost (only padding
            // and unused slots, which no one reads, are not fields).
            // A request changes only its vbd's held ids, not its domain.
            submit(request.blkifRequest, domid: state.connected[request.vbd]!.domid, number: request.vbd,
                   hold: request.hold)
        case .raw(let raw):
            let vbd = state.connected[raw.vbd]!
            // A slot that does not decode is not a request: nothing happens.
            if let request = try? vbd.ringProtocol.decodeRequest(raw.bytes) {
                submit(request, domid: vbd.domid, number: raw.vbd, hold: raw.hold)
            }
        case let .complete(id, vbd):
            backend.complete(vbd: vbd, id: id)
        case .disconnect(let vbd):
            backend.disconnect(vbd: vbd)
        case let .expect(expectation, vbd):
            expect(expectation, vbd: vbd, at: event.position)
        }
        return judge(event)
    }

    /// The guest side of a request: stamp fresh data into pages about to be
    /// written, then put the request on the ring. `request` is the slot
    /// decoded once here and handed to the backend as such (it would decode
    /// the same bytes to the same request).
    private mutating func submit(_ request: BlkifRequest, domid: DomainID, number: UInt16, hold: Bool) {
        report.statistics.requests += 1
        let segmentCount = request.isDiscard ? 0 : request.effectiveSegmentCount
        report.statistics.segments += segmentCount
        if request.knownOperation?.isWrite == true {
            // Reached once, not per segment: each reach through `xen`
            // retained and released the object.
            let grants = xen.grants
            let memory = xen.memory
            for index in 0..<segmentCount {
                let segment = request.effectiveSegment(at: index)
                guard segment.isWellFormed, let page = grants.guestPage(domid: domid, gref: segment.gref) else {
                    continue
                }
                let sectors = Int(segment.firstSect)...Int(segment.lastSect)
                memory.stamp(page, sectors: sectors, firstToken: nextToken)
                nextToken &+= UInt64(sectors.count)
            }
        }
        backend.submit(vbd: number, request: request, hold: hold)
    }

    private mutating func expect(_ expectation: Expectation, vbd: UInt16, at position: TracePosition) {
        switch expectation {
        case let .violation(check, backendName):
            if applies(backendName, at: position) { report.expectedChecks.insert(check) }
        case let .response(id, status):
            let seen = lastResponses.status(vbd: vbd, id: id)
            if seen != status.rawValue {
                let seenText = seen.map { BlkifResponseStatus(rawValue: $0)?.traceName ?? "\($0)" } ?? "no response yet"
                recordExpect(Violation(check: .expect, position: position, expected: "response id=\(id) status=\(status)",
                                       seen: seenText))
            }
        case .persistent(let count):
            let seen = backend.connectionSummary(vbd: vbd)?.persistentCount
            if seen != count {
                recordExpect(Violation(check: .expect, position: position, expected: "persistent=\(count)",
                                       seen: seen.map { "persistent=\($0)" } ?? "not connected"))
            }
        }
    }

    private mutating func recordExpect(_ violation: Violation) {
        report.record(violation, eventIndex: eventIndex)
        pendingExpectViolations.append(violation)
    }

    /// Drains what the event caused and hands it to the oracle.
    private mutating func judge(_ event: TraceEvent) -> [Violation] {
        let observations = xen.log.drain()
        let publications = backend.drainPublications()
        // Emptied only when it holds something: most events publish no
        // response, and emptying an empty list still went through the
        // generic range replacement.
        if !latestResponses.isEmpty { latestResponses.removeAll(keepingCapacity: true) }
        for publication in publications {
            if case let .response(vbd, response) = publication {
                lastResponses.record(response.status, vbd: vbd, id: response.id)
                latestResponses.append((vbd, response))
            }
        }
        for observation in observations {
            switch observation {
            case .mapBatch(let batch):
                report.statistics.mapHypercalls += 1
                report.statistics.mapOps += batch.ops.count
            case .unmapBatch(let batch):
                report.statistics.unmapHypercalls += 1
                report.statistics.unmapOps += batch.ops.count
            default: break
            }
        }
        var found: [Violation] = []
        if !pendingExpectViolations.isEmpty { swap(&found, &pendingExpectViolations) }
        if let oracle {
            if !publicationsForOracle.isEmpty { publicationsForOracle.removeAll(keepingCapacity: true) }
            for publication in publications { publicationsForOracle.append(Publication(publication)) }
            // The log is handed over: nothing here reads it after the oracle.
            let judged = oracle.check(event.kind, at: event.position, environment: consume observations,
                                      publications: publicationsForOracle,
                                      world: world)
            // The usual event finds nothing: appending an empty list still
            // cost a call and a uniqueness check per event.
            if !judged.isEmpty {
                for violation in judged { report.record(violation, eventIndex: eventIndex) }
                if found.isEmpty { found = judged } else { found += judged }
            }
        }
        return found
    }
}

/// The status of the latest response to each request id, per vbd, for
/// `expect response`. Written on every response, so it avoids hashing: vbds
/// go through the trace state's `VbdTable`, and ring ids are in practice
/// small (a blkfront uses ring slot numbers), so they index an array; any
/// other id goes to a dictionary.
struct LatestResponseStatuses {
    private struct ByID: Sendable {
        /// By id, for ids below `smallIdLimit`; `none` where no response came yet.
        var small: [Int32] = []
        var large: [UInt64: Int16] = [:]
    }

    /// Caps the array at 4096 entries per vbd whatever the ids.
    private static var smallIdLimit: UInt64 { 4096 }
    /// Outside Int16's range, so no status is mistaken for it.
    private static var none: Int32 { Int32.min }

    private var byVbd = VbdTable<ByID>()

    func status(vbd: UInt16, id: UInt64) -> Int16? {
        guard let statuses = byVbd[vbd] else { return nil }
        guard id < Self.smallIdLimit else { return statuses.large[id] }
        guard Int(id) < statuses.small.count, statuses.small[Int(id)] != Self.none else { return nil }
        return Int16(statuses.small[Int(id)])
    }

    mutating func record(_ status: Int16, vbd: UInt16, id: UInt64) {
        if byVbd[vbd] == nil { byVbd[vbd] = ByID() }
        byVbd.update(vbd) { statuses in
            guard id < Self.smallIdLimit else {
                statuses.large[id] = status
                return
            }
            if Int(id) >= statuses.small.count {
                statuses.small.append(contentsOf: repeatElement(Self.none, count: Int(id) - statuses.small.count + 1))
            }
            statuses.small[Int(id)] = Int32(status)
        }
    }
}
