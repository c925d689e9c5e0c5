import Backend
import Blkif
import FakeXen
import Oracle
import Trace

/// Anything that yields trace events one at a time (text and pcap readers).
public protocol TraceEventSource {
    var file: String { get }
    mutating func next() throws(TraceError) -> TraceEvent?
}

/// A text trace read line by line.
public struct TextTraceSource: TraceEventSource {
    public let file: String
    private var reader: TextTraceReader
    public init(text: String, file: String) {
        self.file = file
        reader = TextTraceReader(text: text, file: file)
    }
    public init(path: String) throws(TraceError) {
        file = path
        reader = try TextTraceReader.open(path: path)
    }
    public mutating func next() throws(TraceError) -> TraceEvent? { try reader.next() }
}

/// A source over events already in memory (generated and decoded traces).
public struct EventListSource: TraceEventSource {
    public let file: String
    private var events: [TraceEvent]
    private var index = 0
    public init(file: String, events: [TraceEvent]) {
        self.file = file
        self.events = events
    }
    public init(file: String, kinds: [TraceEventKind]) {
        self.init(file: file, events: kinds.enumerated().map { TraceEvent(kind: $1, position: .line($0 + 2, column: 1)) })
    }
    public mutating func next() throws(TraceError) -> TraceEvent? {
        guard index < events.count else { return nil }
        defer { index += 1 }
        return events[index]
    }
}

public struct ReplayOptions: Sendable {
    public var oracle: Bool
    public init(oracle: Bool = true) { self.oracle = oracle }
}

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

    private struct Attachment { let domid: DomainID; let ringProtocol: BlkifProtocol; var held: [UInt64] = [] }
    private var attached: [UInt16: Attachment] = [:]
    private var lastResponses: [UInt16: [UInt64: Int16]] = [:]
    private var latestDomid: DomainID?
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
    public static func run(_ source: inout some TraceEventSource, variant: BackendVariant,
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

    public func finalReport() -> ReplayReport {
        var final = report
        final.statistics.oracle = oracle?.statistics
        final.panicked = backend.panic != nil
        return final
    }

    /// The end of a trace is a disconnect of everything still connected.
    public func finish() {
        guard backend.panic == nil else { return }
        for vbd in attached.keys.sorted() {
            try? apply(TraceEvent(kind: .disconnect(vbd: vbd), position: lastPosition))
            if backend.panic != nil { return }
        }
    }

    public func apply(_ event: TraceEvent) throws(TraceError) {
        lastPosition = event.position
        let fail = { (message: String) in TraceError(file: self.report.file, position: event.position, message: message) }
        report.statistics.events += 1
        eventIndex += 1
        switch event.kind {
        case .frontendKey(let name, let value):
            frontendKeys[name] = value
        case .connect(let connect):
            guard attached[connect.vbd] == nil else {
                throw fail("vbd \(connect.vbd) is already connected; disconnect it first")
            }
            if let persistent = connect.persistent { frontendKeys["feature-persistent"] = persistent ? "1" : "0" }
            let directory = Xenstore.frontendDirectory(domid: connect.domid, vbd: connect.vbd)
            for (name, value) in frontendKeys { xen.xenstore.write(directory + "/" + name, value) }
            latestDomid = connect.domid
            attached[connect.vbd] = Attachment(domid: connect.domid, ringProtocol: connect.protocolName)
            backend.connect(ConnectParameters(domid: connect.domid, vbd: connect.vbd, ringProtocol: connect.protocolName,
                                              offersPersistent: connect.backendPersistent,
                                              maxPersistent: connect.maxPersistent, sectors: connect.sectors,
                                              flush: connect.flush, discard: connect.discard))
        case .grant(let grant):
            try checkRange(grant.grefs, fail)
            for gref in grant.grefs { xen.grants.grant(domid: grant.domid, gref: gref, readOnly: grant.readOnly) }
        case .revoke(let revoke):
            try checkRange(revoke.grefs, fail)
            for gref in revoke.grefs { xen.grants.revoke(domid: revoke.domid, gref: gref) }
        case .fail(let fault):
            switch fault {
            case let .mapGref(gref, times, status): xen.faults.failMap(gref: gref, times: times, status: status)
            case let .mapNth(nth, status): xen.faults.failMap(nth: nth, status: status)
            case .allocNth(let nth): xen.faults.failAllocation(nth: nth)
            case .hypercallNth(let nth): xen.faults.failHypercall(nth: nth)
            }
        case .request(let request):
            let attachment = try connected(request.vbd, fail)
            try submit(attachment.ringProtocol.encode(request.blkifRequest), vbd: request.vbd, hold: request.hold, fail)
        case .raw(let raw):
            let attachment = try connected(raw.vbd, fail)
            let size = attachment.ringProtocol.request.size
            guard raw.bytes.count == size else {
                throw fail("raw request is \(raw.bytes.count) bytes; protocol \(attachment.ringProtocol) takes \(size)")
            }
            try submit(raw.bytes, vbd: raw.vbd, hold: raw.hold, fail)
        case let .complete(id, vbd):
            var attachment = try connected(vbd, fail)
            guard let index = attachment.held.firstIndex(of: id) else {
                throw fail("id \(id) is not held on vbd \(vbd)")
            }
            attachment.held.remove(at: index)
            attached[vbd] = attachment
            backend.complete(vbd: vbd, id: id)
        case .disconnect(let vbd):
            _ = try connected(vbd, fail)
            attached[vbd] = nil
            backend.disconnect(vbd: vbd)
        case let .expect(expectation, vbd):
            try expect(expectation, vbd: vbd, at: event.position, fail)
        }
        judge(event)
    }

    private func checkRange(_ grefs: ClosedRange<UInt32>, _ fail: (String) -> TraceError) throws(TraceError) {
        if grefs.count > 65536 { throw fail("a range of \(grefs.count) grefs; at most 65536 in one event") }
    }

    private func connected(_ vbd: UInt16, _ fail: (String) -> TraceError) throws(TraceError) -> Attachment {
        guard let attachment = attached[vbd] else { throw fail("vbd \(vbd) is not connected") }
        return attachment
    }

    /// The guest side of a request: stamp fresh data into pages about to be
    /// written, then put the request on the ring.
    private func submit(_ bytes: [UInt8], vbd: UInt16, hold: Bool, _ fail: (String) -> TraceError) throws(TraceError) {
        var attachment = attached[vbd]!
        let ringSize = attachment.ringProtocol.ringSize
        // Every held request occupies a ring slot until it completes; a
        // frontend cannot put a request on a full ring.
        guard attachment.held.count < ringSize else {
            throw fail(hold ? "more than \(ringSize) requests held on vbd \(vbd): the ring has \(ringSize) slots"
                            : "the ring of vbd \(vbd) is full: \(ringSize) requests are held; complete one first")
        }
        guard let request = try? attachment.ringProtocol.decodeRequest(bytes) else { return }
        report.statistics.requests += 1
        if hold {
            attachment.held.append(request.id)
            attached[vbd] = attachment
        }
        let segments = request.isDiscard ? [] : request.effectiveSegments
        report.statistics.segments += segments.count
        let op = request.knownOperation
        if op == .write || op == .writeBarrier || op == .flushDiskcache {
            for segment in segments where segment.isWellFormed {
                guard let page = xen.grants.guestPage(domid: attachment.domid, gref: segment.gref) else { continue }
                for sector in Int(segment.firstSect)...Int(segment.lastSect) {
                    xen.memory.setToken(page, sector: sector, nextToken)
                    nextToken &+= 1
                }
            }
        }
        backend.submit(vbd: vbd, bytes: bytes, hold: hold)
    }

    private func expect(_ expectation: Expectation, vbd: UInt16, at position: TracePosition,
                        _ fail: (String) -> TraceError) throws(TraceError) {
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
            let attachment = try connected(vbd, fail)
            _ = attachment
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
