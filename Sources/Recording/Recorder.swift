import Backend
import Blkif
import Harness
import Oracle
import Trace
import TracePcap

/// What a recording did, for the `record` summary.
public struct RecordingSummary: Sendable {
    public let file: String
    public let workload: Workload
    /// Packets written, the header included.
    public internal(set) var packets = 0
    /// Requests, segments, map and unmap operations of the replay; persistent
    /// hits come from the oracle and are nil without it.
    public internal(set) var statistics = ReplayStatistics()
    public internal(set) var responses = 0
    /// Responses whose status is not okay (a workload should see none).
    public internal(set) var failedResponses = 0
    public internal(set) var grants = 0
    public internal(set) var revokes = 0
    public internal(set) var connects = 0
    /// The most granted pages the persistent frontend's pool ever held.
    public internal(set) var poolPeak = 0
    /// The most requests in flight at once.
    public internal(set) var depthPeak = 0
    /// What the oracle found (the first ones kept) and how many in all:
    /// under the fixed backend a recording must have none.
    public internal(set) var violations: [Violation] = []
    public internal(set) var violationCount = 0
    public internal(set) var panicked = false

    init(file: String, workload: Workload) {
        self.file = file
        self.workload = workload
    }
}

public struct RecordingError: Error, CustomStringConvertible {
    public let description: String
}

/// Records a frontend workload: generates the frontend's events one at a
/// time, applies each to a `TraceRunner` over the fixed backend, and writes
/// them to a pcap together with the responses the backend gave (kind-3
/// packets, the recording's expectations) and, before each disconnect, the
/// number of persistent grants it held (`expect persistent`).
public enum WorkloadRecorder {
    public static func record(_ workload: Workload, to path: String, oracle: Bool = true,
                              variant: BackendVariant = .fixed) throws(RecordingError) -> RecordingSummary {
        if let problem = workload.problems.first { throw RecordingError(description: "invalid workload: \(problem)") }
        let writer: PcapTraceWriter
        do { writer = try PcapTraceWriter(path: path) } catch { throw RecordingError(description: error.description) }
        let session = RecordingSession(workload: workload, writer: writer, oracle: oracle, variant: variant)
        do {
            try session.run()
            try writer.close()
        } catch let error as PcapWriteError {
            throw RecordingError(description: "\(path): packet \(writer.packetCount + 1): \(error.message)")
        } catch let error as TraceError {
            throw RecordingError(description: "the workload made an invalid trace (a recorder bug): \(error)")
        } catch {
            throw RecordingError(description: "\(error)")
        }
        return session.summary(packets: writer.packetCount)
    }
}

/// Collects the oracle's findings (a class, so the runner's callback does not
/// hold the session).
private final class FindingLog {
    var kept: [Violation] = []
    var count = 0
}

/// One recording: the frontend's state and the loop that drives it.
private final class RecordingSession {
    struct InFlight {
        let id: UInt64
        let grefs: [GrantRef]
    }

    let workload: Workload
    let writer: PcapTraceWriter
    let runner: TraceRunner
    let findings = FindingLog()
    var summary: RecordingSummary
    var random: WorkloadRandom
    let vbd: UInt16 = 0
    var grefs = GrefAllocator()
    /// blkfront's shadow free list: ids 0..<ring size, last freed first.
    var freeIDs: [UInt64]
    var inFlight: [InFlight] = []
    /// Persistent frontend: every page granted this connection, and those free now (last freed on top).
    var pool: [GrantRef] = []
    var freePool: [GrantRef] = []
    var cursor: UInt64 = 0

    init(workload: Workload, writer: PcapTraceWriter, oracle: Bool, variant: BackendVariant) {
        self.workload = workload
        self.writer = writer
        runner = TraceRunner(file: writer.path, variant: variant, options: ReplayOptions(oracle: oracle))
        summary = RecordingSummary(file: writer.path, workload: workload)
        random = WorkloadRandom(seed: workload.seed)
        freeIDs = (0..<UInt64(workload.protocolName.ringSize)).reversed()
        let findings = self.findings
        runner.onEvent = { _, found in
            findings.count += found.count
            for violation in found where findings.kept.count < 20 { findings.kept.append(violation) }
        }
    }

    func summary(packets: Int) -> RecordingSummary {
        var result = summary
        let report = runner.finalReport()
        result.packets = packets
        result.statistics = report.statistics
        result.violations = findings.kept
        result.violationCount = findings.count
        result.panicked = report.panicked
        return result
    }

    var isPersistent: Bool { workload.frontend == .persistent }

    func run() throws {
        var issued = 0
        var sinceConnect = 0
        try connect()
        while !runner.hasPanicked {
            let reconnectDue = workload.reconnectEvery.map { sinceConnect >= $0 } ?? false
            let canIssue = issued < workload.requests && !reconnectDue && inFlight.count < workload.queueDepth
            if canIssue && (inFlight.isEmpty || random.chance(0.75)) {
                try issue()
                issued += 1
                sinceConnect += 1
            } else if !inFlight.isEmpty {
                let index = Int(random.below(UInt64(inFlight.count)))
                try emit(.complete(id: inFlight[index].id, vbd: vbd))
            } else if reconnectDue && issued < workload.requests {
                try disconnect()
                try connect()
                sinceConnect = 0
            } else {
                break
            }
        }
        if !runner.hasPanicked { try disconnect() }
    }

    func connect() throws {
        summary.connects += 1
        try emit(.connect(ConnectEvent(domid: workload.domid, protocolName: workload.protocolName,
                                       persistent: isPersistent ? true : nil, sectors: workload.diskSectors, vbd: vbd)))
    }

    /// The frontend closes: the backend tears down; then the persistent
    /// frontend ends foreign access to its pool (blkif_free).
    func disconnect() throws {
        if let count = runner.persistentCount(vbd: vbd) {
            try emit(.expect(.persistent(count: count), vbd: vbd))
        }
        try emit(.disconnect(vbd: vbd))
        for range in Self.ranges(pool.sorted()) {
            summary.revokes += range.count
            try emit(.revoke(RevokeEvent(grefs: range, domid: workload.domid)))
        }
        for gref in pool { grefs.give(gref) }
        pool.removeAll()
        freePool.removeAll()
    }

    /// One request: draw its shape, get a page per segment, put it on the ring.
    func issue() throws {
        let count = random.int(in: workload.segments)
        let isRead = random.chance(workload.readFraction)
        // A quarter of the requests do not start or end on a page boundary.
        let unaligned = random.chance(0.25)
        var shapes: [(first: UInt8, last: UInt8)] = Array(repeating: (0, 7), count: count)
        if unaligned {
            let first = UInt8(random.int(in: 0...7))
            shapes[0].first = first
            let lastLow = count == 1 ? Int(first) : 0
            shapes[count - 1].last = UInt8(random.int(in: lastLow...7))
        }
        let total = UInt64(shapes.reduce(0) { $0 + Int($1.last) - Int($1.first) + 1 })
        let sector: UInt64
        switch workload.sectorPattern {
        case .sequential:
            if cursor + total > workload.diskSectors { cursor = 0 }
            sector = cursor
            cursor += total
        case .random:
            sector = random.below(workload.diskSectors - total + 1)
        }
        let id = freeIDs.removeLast()
        var segments: [BlkifSegment] = []
        var used: [GrantRef] = []
        for shape in shapes {
            let gref = try page(readOnly: !isRead)
            used.append(gref)
            segments.append(BlkifSegment(gref: gref, firstSect: shape.first, lastSect: shape.last))
        }
        let hold = workload.queueDepth > 1
        inFlight.append(InFlight(id: id, grefs: used))
        summary.depthPeak = max(summary.depthPeak, inFlight.count)
        try emit(.request(RequestEvent(id: id, operation: isRead ? BlkifOperation.read.rawValue : BlkifOperation.write.rawValue,
                                       sector: sector, segments: segments, vbd: vbd, hold: hold)))
    }

    /// A granted page for one segment.
    func page(readOnly: Bool) throws -> GrantRef {
        if isPersistent {
            // Under persistent grants every page is granted writable, once.
            if let gref = freePool.popLast() { return gref }
            let gref = grefs.take()
            pool.append(gref)
            summary.poolPeak = max(summary.poolPeak, pool.count)
            try grant(gref, readOnly: false)
            return gref
        }
        let gref = grefs.take()
        try grant(gref, readOnly: readOnly)
        return gref
    }

    func grant(_ gref: GrantRef, readOnly: Bool) throws {
        summary.grants += 1
        try emit(.grant(GrantEvent(grefs: gref...gref, readOnly: readOnly, domid: workload.domid)))
    }

    /// The response is in: give the id back and the pages (persistent: to the
    /// pool, the last segment's on top; legacy: end foreign access).
    func responded(id: UInt64) throws {
        guard let index = inFlight.firstIndex(where: { $0.id == id }) else { return }
        let request = inFlight.remove(at: index)
        freeIDs.append(request.id)
        if isPersistent {
            freePool.append(contentsOf: request.grefs)
            return
        }
        for gref in request.grefs {
            summary.revokes += 1
            try emit(.revoke(RevokeEvent(grefs: gref...gref, domid: workload.domid)))
            grefs.give(gref)
        }
    }

    /// Writes an event, replays it, and records the responses it produced.
    func emit(_ kind: TraceEventKind) throws {
        let event = TraceEvent(kind: kind, position: .packet(writer.packetCount + 1))
        try writer.write(kind)
        try runner.apply(event)
        let responses = runner.latestResponses
        guard !responses.isEmpty else { return }
        for (vbd, response) in responses {
            summary.responses += 1
            let status = BlkifResponseStatus(rawValue: response.status)
            if status != .okay { summary.failedResponses += 1 }
            guard let status else { continue }   // not a BLKIF_RSP: nothing a trace can expect
            try emit(.expect(.response(id: response.id, status: status), vbd: vbd))
        }
        for (vbd, response) in responses where vbd == self.vbd { try responded(id: response.id) }
    }

    /// Consecutive grefs as inclusive ranges.
    static func ranges(_ sorted: [GrantRef]) -> [ClosedRange<GrantRef>] {
        var result: [ClosedRange<GrantRef>] = []
        for gref in sorted {
            if let last = result.last, last.upperBound &+ 1 == gref {
                result[result.count - 1] = last.lowerBound...gref
            } else {
                result.append(gref...gref)
            }
        }
        return result
    }
}
