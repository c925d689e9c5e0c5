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
    /// What the frontend did: responses, grants, revokes, connects, its peaks.
    public let frontend: FrontendTally
    /// What the oracle found (the first ones kept) and how many in all:
    /// under the fixed backend a recording must have none.
    public internal(set) var violations: [Violation] = []
    public internal(set) var violationCount = 0
    public internal(set) var panicked = false

    init(file: String, workload: Workload, packets: Int, tally: FrontendTally, outcome: SessionFindings) {
        self.file = file
        self.workload = workload
        self.packets = packets
        statistics = outcome.statistics
        frontend = tally
        violations = outcome.kept
        violationCount = outcome.count
        panicked = outcome.panicked
    }
}

public struct RecordingError: Error, CustomStringConvertible {
    public let description: String

    public init(description: String) { self.description = description }
}

/// Records a frontend workload: the seeded model decides each step, a
/// `FrontendSession` over the fixed backend carries it out and writes it to
/// a pcap together with the responses the backend gave (kind-3 packets, the
/// recording's expectations) and, before each disconnect, the number of
/// persistent grants it held (`expect persistent`).
public enum WorkloadRecorder {
    public static func record(_ workload: Workload, to path: String, oracle: Bool = true,
                              variant: BackendVariant = .fixed) throws(RecordingError) -> RecordingSummary {
        if let problem = workload.problems.first { throw RecordingError(description: "invalid workload: \(problem)") }
        let writer: PcapTraceWriter
        do { writer = try PcapTraceWriter(path: path) } catch { throw RecordingError(description: error.description) }
        let session = FrontendSession(frontend: workload.frontend, protocolName: workload.protocolName,
                                      domid: workload.domid, sink: writer, variant: variant, oracle: oracle)
        var driver = WorkloadDriver(workload: workload, session: session)
        do {
            try driver.run()
            try writer.close()
        } catch {
            throw sessionError(error, writer: writer)
        }
        return RecordingSummary(file: path, workload: workload, packets: writer.packetCount, tally: session.tally,
                                outcome: session.outcome())
    }

    /// A session's failure in the recorder's words: a file that cannot be
    /// written names its packet; an invalid trace is the model's bug.
    public static func sessionError(_ error: any Error, writer: PcapTraceWriter) -> RecordingError {
        switch error {
        case let error as PcapWriteError:
            RecordingError(description: "\(writer.path): packet \(writer.packetCount + 1): \(error.message)")
        case let error as TraceError:
            RecordingError(description: "the frontend model made an invalid trace (a recorder bug): \(error)")
        default:
            RecordingError(description: "\(error)")
        }
    }
}

/// The seeded synthetic workload: draws each request's shape and when to
/// issue, complete or reconnect, and has the session do it.
struct WorkloadDriver {
    let workload: Workload
    let session: FrontendSession
    var random: WorkloadRandom
    let vbd: UInt16 = 0
    var cursor: UInt64 = 0

    init(workload: Workload, session: FrontendSession) {
        self.workload = workload
        self.session = session
        random = WorkloadRandom(seed: workload.seed)
    }

    mutating func run() throws {
        var issued = 0
        var sinceConnect = 0
        try connect()
        while !session.hasPanicked {
            let inFlight = session.inFlightCount(vbd: vbd)
            let reconnectDue = workload.reconnectEvery.map { sinceConnect >= $0 } ?? false
            let canIssue = issued < workload.requests && !reconnectDue && inFlight < workload.queueDepth
            if canIssue && (inFlight == 0 || random.chance(0.75)) {
                try issue()
                issued += 1
                sinceConnect += 1
            } else if inFlight > 0 {
                let index = Int(random.below(UInt64(inFlight)))
                try session.complete(id: session.inFlightID(vbd: vbd, at: index), vbd: vbd)
            } else if reconnectDue && issued < workload.requests {
                try session.disconnect(vbd: vbd)
                try connect()
                sinceConnect = 0
            } else {
                break
            }
        }
        if !session.hasPanicked { try session.disconnect(vbd: vbd) }
    }

    func connect() throws {
        try session.connect(vbd: vbd, sectors: workload.diskSectors)
    }

    /// One request: draw its shape and place it.
    mutating func issue() throws {
        let count = random.int(in: workload.segments)
        let isRead = random.chance(workload.readFraction)
        // A quarter of the requests do not start or end on a page boundary.
        let unaligned = random.chance(0.25)
        var shapes = Array(repeating: PlannedRequest.Segment(first: 0, last: 7), count: count)
        if unaligned {
            let first = UInt8(random.int(in: 0...7))
            shapes[0].first = first
            let lastLow = count == 1 ? Int(first) : 0
            shapes[count - 1].last = UInt8(random.int(in: lastLow...7))
        }
        let total = UInt64(shapes.reduce(0) { $0 + $1.sectorCount })
        let sector: UInt64
        switch workload.sectorPattern {
        case .sequential:
            if cursor + total > workload.diskSectors { cursor = 0 }
            sector = cursor
            cursor += total
        case .random:
            sector = random.below(workload.diskSectors - total + 1)
        }
        let plan = PlannedRequest(operation: isRead ? .read : .write, sector: sector, segments: shapes)
        try session.issue(plan, vbd: vbd, hold: workload.queueDepth > 1)
    }
}
