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
        run = TraceRun(file: file, variant: variant, oracle: options.oracle ? ConformanceOracle.judging(variant) : nil)
    }

    /// Replays a whole source, tears down what is still connected, and reports.
    static func run(_ source: inout some TraceEventSource, variant: BackendVariant,
                           options: ReplayOptions = ReplayOptions(),
                           onEvent: ((TraceEvent, [Violation]) -> Void)? = nil) -> ReplayReport {
        // The run is a local value, not a runner's property: no one else can
        // reach it (the callback was made before it), so each event is applied
        // with no runtime exclusivity check of a class property.
        var run = TraceRun(file: source.file, variant: variant,
                           oracle: options.oracle ? ConformanceOracle.judging(variant) : nil)
        let backend = run.backend
        do {
            var first = true
            while let event = try source.next() {
                if first {
                    // The header has been read with the first event.
                    run.begin(formatVersion: source.formatVersion)
                    first = false
                }
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

    /// Which generations the trace's expectations describe follows from its
    /// format version (a runner fed events one by one, with no header,
    /// judges every expectation until told).
    public func begin(formatVersion: Int) { run.begin(formatVersion: formatVersion) }

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
    /// Whether the trace's `expect` lines describe this backend's generation
    /// (trace-format.md §4.9): a version-1 trace's describe G2012 backends,
    /// a later one's every generation, until a `generations` line says whose.
    private var expectationsApply = true

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

    /// After a panic only `expect violation` lines still count (and
    /// `generations` lines, which say whose they are).
    mutating func registerExpectation(_ event: TraceEvent) {
        if case let .generations(names) = event.kind { expectationsApply = names.contains(variant.generation.rawValue) }
        if case let .expect(.violation(check, backendName), _) = event.kind, expectationsApply,
           applies(backendName, at: event.position) {
            report.expectedChecks.insert(check)
        }
    }

    mutating func begin(formatVersion: Int) {
        expectationsApply = TraceFormat.defaultGenerations(version: formatVersion).contains(variant.generation.rawValue)
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
                                              flush: connect.flush, discard: connect.discard,
                                              hotplugAfterConnect: connect.hotplugAfterConnect))
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
                // A G2013 backend reads an indirect slot in its own layout,
                // so it is handed the bytes rather than their read/write reading.
                submit(request, domid: vbd.domid, number: raw.vbd, hold: raw.hold,
                       slot: variant.generation == .g2012 ? nil : raw.bytes)
            }
        case .indirect(let indirect):
            let vbd = state.connected[indirect.vbd]!
            writeDescriptors(of: indirect, domid: vbd.domid)
            // The backend reads the slot as its generation reads one (a G2012
            // backend knows no indirect layout and reads read/write fields).
            report.statistics.requests += 1
            report.statistics.segments += indirect.segments.count
            backend.submit(vbd: indirect.vbd, indirect: indirect.blkifRequest, hold: indirect.hold)
        case .write(let write):
            // A gref not granted now (never, or revoked) has no page behind
            // it: the write does nothing, as stamping does nothing there.
            // (Whether a revoke took effect is only known at run time.)
            guard let page = xen.grants.guestPage(domid: write.domid, gref: write.gref) else { break }
            if let reads = write.afterReads {
                xen.memory.armWrite(page, offset: write.offset, write.bytes, afterReads: reads)
            } else {
                xen.memory.writeBytes(page, offset: write.offset, write.bytes)
            }
        case .tick(let milliseconds):
            xen.clock.advance(milliseconds: milliseconds)
            backend.timePassed()
        case let .parameter(parameter, value):
            switch parameter {
            case .maxPersistentGrants: xen.parameters.maxPersistentGrants = Int(value)
            case .maxBufferPages: xen.parameters.maxBufferPages = Int(value)
            case .featurePersistent: xen.parameters.featurePersistent = value != 0
            case .persistentGrantUnusedSeconds: xen.parameters.persistentGrantUnusedSeconds = UInt32(value)
            }
        case let .complete(id, vbd):
            backend.complete(vbd: vbd, id: id)
        case .disconnect(let vbd):
            backend.disconnect(vbd: vbd)
        case let .expect(expectation, vbd):
            if expectationsApply { expect(expectation, vbd: vbd, at: event.position) }
        case .generations(let names):
            expectationsApply = names.contains(variant.generation.rawValue)
        }
        return judge(event)
    }

    /// The guest side of a request: stamp fresh data into pages about to be
    /// written, then put the request on the ring. `request` is the slot
    /// decoded once here and handed to the backend as such (it would decode
    /// the same bytes to the same request).
    /// `slot`, when given, is handed to the backend as the ring slot's bytes
    /// instead of `request`.
    private mutating func submit(_ request: BlkifRequest, domid: DomainID, number: UInt16, hold: Bool,
                                 slot: [UInt8]? = nil) {
        report.statistics.requests += 1
        let segmentCount = request.isDiscard ? 0 : request.effectiveSegmentCount
        report.statistics.segments += segmentCount
        if request.knownOperation?.isWrite == true {
            // Reached once, not per segment: each reach through `xen`
            // retained and released the object.
            let grants = xen.grants
            let memory = xen.memory
            for index in 0..<segmentCount {
                stampData(request.effectiveSegment(at: index), domid: domid, grants: grants, memory: memory)
            }
        }
        if let slot {
            backend.submit(vbd: number, bytes: slot, hold: hold)
        } else {
            backend.submit(vbd: number, request: request, hold: hold)
        }
    }

    /// The guest side of an indirect request: it writes each descriptor into
    /// its page (descriptor `i` at byte `(i % 512) * 8` of page `i / 512`),
    /// into pages its domain grants (others have no page to write), and, for
    /// a write, stamps fresh data into the pages the descriptors name, as for
    /// a direct write. The oracle is told of the stamped pages the same way.
    private mutating func writeDescriptors(of indirect: IndirectRequestEvent, domid: DomainID) {
        let grants = xen.grants
        let memory = xen.memory
        for (gref, bytes) in zip(indirect.pages, IndirectSegmentPages.descriptorBytes(indirect.segments)) {
            guard let page = grants.guestPage(domid: domid, gref: gref) else { continue }
            memory.writeBytes(page, offset: 0, bytes)
        }
        guard BlkifOperation(rawValue: indirect.operation)?.isWrite == true else { return }
        for segment in indirect.segments { stampData(segment, domid: domid, grants: grants, memory: memory) }
    }

    /// The guest writes fresh data (tokens counting up) into the sectors of
    /// a well-formed segment whose gref its domain grants; others have no
    /// page to write.
    @inline(__always)
    private mutating func stampData(_ segment: BlkifSegment, domid: DomainID, grants: GrantTable, memory: GuestMemory) {
        guard segment.isWellFormed, let page = grants.guestPage(domid: domid, gref: segment.gref) else { return }
        let sectors = Int(segment.firstSect)...Int(segment.lastSect)
        memory.stamp(page, sectors: sectors, firstToken: nextToken)
        nextToken &+= UInt64(sectors.count)
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

extension ConformanceOracle {
    /// The oracle for `variant`, predicting under its generation. The Oracle
    /// module names generations itself (it does not know the backend's
    /// types); a backend generation it cannot predict is a programming
    /// error, never a quiet fall-back to another generation's semantics.
    static func judging(_ variant: BackendVariant) -> ConformanceOracle {
        guard let generation = OracleGeneration(rawValue: variant.generation.rawValue) else {
            preconditionFailure("the oracle predicts no generation named \(variant.generation.rawValue)")
        }
        return ConformanceOracle(generation: generation)
    }
}
