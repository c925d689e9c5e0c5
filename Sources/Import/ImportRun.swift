import Blkif
import Recording
import Trace

/// One replay of the trace through one frontend model: reads the file
/// again, line by line, and has a `FrontendSession` place each record's
/// ring requests, complete them when the queue depth says, and tick the
/// trace's clock in between.
final class ImportRun {
    /// A request in flight, for deciding when it completes.
    struct Pending {
        let vbd: UInt16
        let id: UInt64
        /// When the trace says it completed (MSR), if it says.
        let due: UInt64?
        /// Its sectors (for matching blkparse's `C` events), `start == end` for a flush.
        let start: UInt64
        let end: UInt64
        /// Issue order, to break ties.
        let order: Int
    }

    let path: String
    let options: ImportOptions
    let survey: TraceSurvey
    let session: FrontendSession
    let depth: QueueDepth
    let maxSegments = Blkif.maxSegmentsPerRequest
    private(set) var tally: ImportTally
    private var clock = TraceClock()
    private var pending: [Pending] = []
    private var issued = 0
    /// Called after each converted record (for the plot).
    var onRecord: ((FrontendSession) -> Void)?

    init(path: String, options: ImportOptions, survey: TraceSurvey, session: FrontendSession) {
        self.path = path
        self.options = options
        self.survey = survey
        self.session = session
        depth = options.effectiveQueueDepth
        tally = ImportTally(frontend: session.frontend)
    }

    /// Whether requests are held for a later `complete` (else each is answered at once).
    var holds: Bool { depth != .fixed(1) }

    func run(pass: Int, progress: ImportProgress?) throws {
        for (vbd, _) in survey.devices.enumerated() {
            try session.connect(vbd: UInt16(vbd), sectors: survey.diskSectors(vbd: vbd, options: options),
                                discard: survey.trims[vbd])
        }
        let input = try InputLines(path: path)
        var parser = options.format.parser(blkparseAction: options.blkparseAction)
        let conversion = RecordConversion(options: options)
        while !session.hasPanicked, tally.records < options.maxRecords ?? .max,
              let line = try input.next({ (bytes) throws(LineProblem) -> TraceLine in try parser.parse(bytes) }) {
            if input.lineNumber & 0xFFFF == 0 { progress?.update(pass: pass, input: input) }
            switch line {
            case let .skip(reason):
                tally.skip(reason)
            case let .completion(device, sector, sectors, time):
                try completed(device: device, sector: sector, sectors: sectors, time: time)
            case let .record(record):
                tally.records += 1
                let outcome: RecordConversion.Outcome
                do { outcome = try conversion.outcome(record) } catch {
                    throw ImportError(file: path, line: input.lineNumber, error.message)
                }
                switch outcome {
                case let .skip(reason): tally.skip(reason)
                case let .convert(converted): try place(record, converted)
                }
            }
        }
        tally.lines = input.lineNumber
        try drain()
        for vbd in survey.devices.indices where !session.hasPanicked { try session.disconnect(vbd: UInt16(vbd)) }
        tally.frontendTally = session.tally
        tally.outcome = session.outcome()
        tally.tickedMilliseconds = clock.tickedMilliseconds
    }

    /// One record: its time, the completions due by then, its ring requests.
    private func place(_ record: IORecord, _ converted: ConvertedRecord) throws {
        let vbd = UInt16(survey.vbd(of: record.device)!)
        tally.converted += 1
        if let time = record.time {
            if depth == .trace && options.format == .msr { try completeDue(by: time) }
            try advance(to: time)
        }
        switch converted.kind {
        case .flush:
            try issue(PlannedRequest(operation: .flush, sector: 0), vbd: vbd, due: record.completion, start: 0, end: 0)
            tally.flushes += 1
        case .discard:
            if converted.range.adjusted { tally.narrowed += 1 }
            if converted.clipped { tally.clippedTrims += 1 }
            let range = converted.range
            try issue(PlannedRequest(operation: .discard(sectors: range.count), sector: range.start), vbd: vbd,
                      due: record.completion, start: range.start, end: range.end)
            tally.discards += 1
        case .read, .write:
            if converted.range.adjusted { tally.widened += 1 }
            if converted.preflush {
                // blkparse completes a flush-then-write with the write's C event: the flush is matched by its sectors.
                let range = converted.range
                try issue(PlannedRequest(operation: .flush, sector: 0), vbd: vbd, due: record.completion,
                          start: range.start, end: range.end)
                tally.flushes += 1
            }
            let operation: PlannedRequest.Operation = converted.kind == .read ? .read : .write
            var pieces = 0
            // As blkfront does: indirect only when a direct request cannot carry the I/O.
            let indirect = options.indirect && RequestSplitter.requestCount(converted.range, maxSegments: maxSegments) > 1
            let limit = indirect ? ImportOptions.maxIndirectSegments : maxSegments
            try RequestSplitter.split(converted.range, operation: operation, maxSegments: limit) { plan in
                pieces += 1
                let end = plan.sector + UInt64(plan.segments.reduce(0) { $0 + $1.sectorCount })
                let asIndirect = indirect && plan.segments.count > maxSegments
                try issue(plan, vbd: vbd, due: record.completion, start: plan.sector, end: end, indirect: asIndirect)
                if asIndirect { tally.indirect += 1 }
                tally.segments += plan.segments.count
                if converted.kind == .read { tally.reads += 1 } else { tally.writes += 1 }
            }
            tally.splits += pieces - 1
        }
        onRecord?(session)
    }

    /// Places one ring request once its vbd has room for it.
    private func issue(_ plan: PlannedRequest, vbd: UInt16, due: UInt64?, start: UInt64, end: UInt64,
                       indirect: Bool = false) throws {
        guard !session.hasPanicked else { return }
        switch depth {
        case let .fixed(limit):
            while session.inFlightCount(vbd: vbd) >= limit, let oldest = pending.firstIndex(where: { $0.vbd == vbd }) {
                try finish(at: oldest)
            }
        case .trace:
            while session.inFlightCount(vbd: vbd) >= session.ringSize, let first = firstDue(vbd: vbd) {
                tally.earlyCompletions += 1
                try finish(at: first)
            }
        }
        // blkback answers a discard at once: holding one would only keep its slot.
        var hold = holds
        if case .discard = plan.operation { hold = false }
        let id = try session.issue(plan, vbd: vbd, hold: hold, indirect: indirect)
        issued += 1
        if hold { pending.append(Pending(vbd: vbd, id: id, due: due, start: start, end: end, order: issued)) }
    }

    /// The request of `vbd` (or any vbd) due first: the earliest completion time, then the oldest.
    private func firstDue(vbd: UInt16?) -> Int? {
        var best: Int?
        for (index, request) in pending.enumerated() where vbd == nil || request.vbd == vbd {
            guard let current = best else { best = index; continue }
            let a = request.due ?? .max
            let b = pending[current].due ?? .max
            if a < b || (a == b && request.order < pending[current].order) { best = index }
        }
        return best
    }

    private func finish(at index: Int) throws {
        let request = pending.remove(at: index)
        guard !session.hasPanicked else { return }
        try session.complete(id: request.id, vbd: request.vbd)
    }

    /// MSR: every request whose completion time has come, in completion order.
    private func completeDue(by time: UInt64) throws {
        while let first = firstDue(vbd: nil), let due = pending[first].due, due <= time {
            try advance(to: due)
            try finish(at: first)
        }
    }

    /// blkparse `C`: the requests of that device within the completed sectors
    /// (a merged request completes every queued one it took in). A flush's
    /// completion has no sectors and completes the flushes.
    private func completed(device: String, sector: UInt64, sectors: UInt64, time: UInt64) throws {
        guard depth == .trace else { return tally.skip(.unusedCompletion) }
        guard let vbdIndex = survey.vbd(of: device) else { return tally.skip(.unmatchedCompletion) }
        let vbd = UInt16(vbdIndex)
        let (end, overflow) = sector.addingReportingOverflow(sectors)
        let matches: (Pending) -> Bool = { request in
            guard request.vbd == vbd else { return false }
            if sectors == 0 { return request.start == request.end }
            return !overflow && request.start < request.end && request.start >= sector && request.end <= end
        }
        guard pending.contains(where: matches) else { return tally.skip(.unmatchedCompletion) }
        try advance(to: time)
        while let index = pending.firstIndex(where: matches) { try finish(at: index) }
    }

    /// The end of the trace: what is still in flight completes, in the order it is due.
    private func drain() throws {
        while !session.hasPanicked, let first = firstDue(vbd: nil) {
            if let due = pending[first].due { try advance(to: due) }
            tally.completedAtEnd += 1
            try finish(at: first)
        }
    }

    private func advance(to time: UInt64) throws {
        var milliseconds = clock.advance(to: time)
        // After a panic the host is down: no time passes for it.
        guard !session.hasPanicked else { return }
        while milliseconds > 0 {
            let step = min(milliseconds, TraceEventKind.maxTickMilliseconds)
            try session.tick(milliseconds: step)
            milliseconds -= step
        }
    }
}
