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
    let xen = FakeXen()
    let backend: Blkback
    let oracle: ConformanceOracle?
    var report: ReplayReport
    /// Called after each event with the event and what was found (for `--verbose`).
    public var onEvent: ((TraceEvent, [Violation]) -> Void)?
    /// The responses the backend published during the latest `apply`, in
    /// order, with their vbd (for the workload recorder).
    public private(set) var latestResponses: [(vbd: UInt16, response: BlkifResponse)] = []

    /// What the trace has set up: connected vbds, their protocols, held requests.
    private var state = TraceState()
    private var lastResponses: [UInt16: [UInt64: Int16]] = [:]
    private var frontendKeys: [String: String] = [:]
    private var nextToken: UInt64 = 0x7000_0000_0000_0000
    private var eventIndex = 0
    private var lastPosition: TracePosition = .line(0, column: 0)

    public init(file: String, variant: BackendVariant, options: ReplayOptions = ReplayOptions()) {
        self.variant = variant
        self.options = options
        backend = Blkback(variant: variant, xen: xen)
        oracle = options.oracle ? ConformanceOracle() : nil
        report = ReplayReport(file: file, backend: variant.name)
    }

    /// Replays a whole source, tears down what is still connected, and reports.
    static func run(_ source: inout some TraceEventSource, variant: BackendVariant,
                           options: ReplayOptions = ReplayOptions(),
                           onEvent: ((TraceEvent, [Violation]) -> Void)? = nil) -> ReplayReport {
        let runner = TraceRunner(file: source.file, variant: variant, options: options)
        runner.onEvent = onEvent
        do {
            while let event = try source.next() {
                if runner.backend.panic != nil {
                    // The host is down: nothing more runs, but the rest of the
                    // trace is still read, for its syntax and for what it expects.
                    runner.registerExpectation(event)
                    continue
                }
                try runner.apply(event)
            }
            runner.finish()
        } catch {
            runner.report.traceError = error
        }
        return runner.finalReport()
    }

    /// After a panic only `expect violation` lines still count.
    func registerExpectation(_ event: TraceEvent) {
        if case let .expect(.violation(check, backendName), _) = event.kind, applies(backendName) {
            report.expectedChecks.insert(check)
        }
    }

    /// Whether an `expect violation … backend=NAME` line speaks of this backend.
    private func applies(_ backendName: String?) -> Bool {
        guard let backendName else { return true }
        return (try? BackendVariant(name: backendName))?.name == variant.name
    }

    /// Whether the backend hit a `BUG()`: the host is down and nothing more runs.
    public var hasPanicked: Bool { backend.panic != nil }

    /// The number of persistent grants the backend publishes for `vbd`, nil when not connected.
    public func persistentCount(vbd: UInt16) -> Int? { backend.snapshot(vbd: vbd)?.persistentCount }

    public func finalReport() -> ReplayReport {
        var final = report
        final.statistics.oracle = oracle?.statistics
        final.panicked = backend.panic != nil
        return final
    }

    /// The end of a trace is a disconnect of everything still connected.
    public func finish() {
        guard backend.panic == nil else { return }
        for vbd in state.connectedVbds {
            try? apply(TraceEvent(kind: .disconnect(vbd: vbd), position: lastPosition))
            if backend.panic != nil { return }
        }
    }

    public func apply(_ event: TraceEvent) throws(TraceError) {
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
            // A request changes only its vbd's held ids, not its domain or protocol.
            let vbd = state.connected[request.vbd]!
            submit(vbd.ringProtocol.encode(request.blkifRequest), on: vbd, number: request.vbd, hold: request.hold)
        case .raw(let raw):
            submit(raw.bytes, on: state.connected[raw.vbd]!, number: raw.vbd, hold: raw.hold)
        case let .complete(id, vbd):
            backend.complete(vbd: vbd, id: id)
        case .disconnect(let vbd):
            backend.disconnect(vbd: vbd)
        case let .expect(expectation, vbd):
            expect(expectation, vbd: vbd, at: event.position)
        }
        judge(event)
    }

    /// The guest side of a request: stamp fresh data into pages about to be
    /// written, then put the request on the ring.
    private func submit(_ bytes: [UInt8], on vbd: TraceState.ConnectedVbd, number: UInt16, hold: Bool) {
        guard let request = try? vbd.ringProtocol.decodeRequest(bytes) else { return }
        report.statistics.requests += 1
        let segments = request.isDiscard ? [] : request.effectiveSegments
        report.statistics.segments += segments.count
        if request.knownOperation?.isWrite == true {
            for segment in segments where segment.isWellFormed {
                guard let page = xen.grants.guestPage(domid: vbd.domid, gref: segment.gref) else { continue }
                let sectors = Int(segment.firstSect)...Int(segment.lastSect)
                xen.memory.stamp(page, sectors: sectors, firstToken: nextToken)
                nextToken &+= UInt64(sectors.count)
            }
        }
        backend.submit(vbd: number, bytes: bytes, hold: hold)
    }

    private func expect(_ expectation: Expectation, vbd: UInt16, at position: TracePosition) {
        switch expectation {
        case let .violation(check, backendName):
            if applies(backendName) { report.expectedChecks.insert(check) }
        case let .response(id, status):
            let seen = lastResponses[vbd]?[id]
            if seen != status.rawValue {
                let seenText = seen.map { BlkifResponseStatus(rawValue: $0)?.traceName ?? "\($0)" } ?? "no response yet"
                recordExpect(Violation(check: .expect, position: position, expected: "response id=\(id) status=\(status)",
                                       seen: seenText))
            }
        case .persistent(let count):
            let seen = backend.snapshot(vbd: vbd)?.persistentCount
            if seen != count {
                recordExpect(Violation(check: .expect, position: position, expected: "persistent=\(count)",
                                       seen: seen.map { "persistent=\($0)" } ?? "not connected"))
            }
        }
    }

    private var pendingExpectViolations: [Violation] = []

    private func recordExpect(_ violation: Violation) {
        report.record(violation, eventIndex: eventIndex)
        pendingExpectViolations.append(violation)
    }

    /// Drains what the event caused and hands it to the oracle.
    private func judge(_ event: TraceEvent) {
        let observations = xen.log.drain()
        let publications = backend.drainPublications()
        latestResponses.removeAll(keepingCapacity: true)
        for publication in publications {
            if case let .response(vbd, response) = publication {
                lastResponses[vbd, default: [:]][response.id] = response.status
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
        var found = pendingExpectViolations
        pendingExpectViolations.removeAll()
        if let oracle {
            let judged = oracle.check(event.kind, at: event.position, environment: observations,
                                      publications: publications.map(Publication.init),
                                      world: HarnessWorld(xen: xen, backend: backend))
            for violation in judged { report.record(violation, eventIndex: eventIndex) }
            found += judged
        }
        onEvent?(event, found)
    }
}
