import Glibc
import Recording
import Trace
import TracePcap

/// What an import did: the trace, the two runs (the frontend written, and
/// the other one judged in memory on the same records), and their series.
public struct ImportSummary: Sendable {
    public let file: String
    public let out: String
    public let options: ImportOptions
    public let survey: TraceSurvey
    /// The frontend written to `out`.
    public let written: ImportTally
    /// The other frontend, on the same records.
    public let compared: ImportTally
    public let writtenSeries: GrantSeries?
    public let comparedSeries: GrantSeries?
    public var isCompressed: Bool { survey.isCompressed }

    public var persistent: ImportTally { written.frontend == .persistent ? written : compared }
    public var legacy: ImportTally { written.frontend == .persistent ? compared : written }
    public var persistentSeries: GrantSeries? { written.frontend == .persistent ? writtenSeries : comparedSeries }
    public var legacySeries: GrantSeries? { written.frontend == .persistent ? comparedSeries : writtenSeries }

    /// Whether either run found a violation or panicked the backend.
    public var failed: Bool {
        [written, compared].contains { $0.outcome.count > 0 || $0.outcome.panicked }
    }
}

/// `replay import`: three passes over the file, none holding it: a survey
/// (devices, disk sizes, trims, and every line checked before anything is
/// written), the chosen frontend written to a temporary file beside `out`
/// (renamed to `out` only when complete), and the other frontend judged in
/// memory for the comparison.
public enum TraceImporter {
    public static func run(path: String, out: String, options: ImportOptions, plot: Bool = false,
                           progress: ImportProgress? = nil) throws(ImportError) -> ImportSummary {
        if let problem = options.problems.first { throw ImportError(file: path, line: 0, problem) }
        let survey = try TraceSurvey.take(path: path, options: options, progress: progress)
        // Ticks and indirect requests are version-2 events.
        let version = survey.hasClock || options.indirect ? 2 : TraceFormat.versions.lowerBound
        let temporary = temporaryPath(beside: out)
        let writer: PcapTraceWriter
        do { writer = try PcapTraceWriter(path: temporary, version: version) } catch {
            throw ImportError(file: out, line: 0, "cannot write: \(error.message)")
        }
        let written: (ImportTally, GrantSeries?)
        do {
            written = try replay(path: path, options: options, survey: survey, frontend: options.frontend, sink: writer,
                                 plot: plot, pass: 2, progress: progress)
            try writer.close()
        } catch {
            unlink(temporary)
            throw describe(error, path: path, out: out, packet: writer.packetCount + 1)
        }
        let other: Workload.Frontend = options.frontend == .persistent ? .legacy : .persistent
        let compared: (ImportTally, GrantSeries?)
        do {
            compared = try replay(path: path, options: options, survey: survey, frontend: other,
                                  sink: DiscardingSink(path: "\(out) (\(other), in memory)"), plot: plot, pass: 3,
                                  progress: progress)
        } catch {
            unlink(temporary)
            throw describe(error, path: path, out: out, packet: nil)
        }
        guard rename(temporary, out) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw ImportError(file: out, line: 0, "cannot write: \(reason)")
        }
        var tally = written.0
        tally.packets = writer.packetCount
        return ImportSummary(file: path, out: out, options: options, survey: survey, written: tally, compared: compared.0,
                             writtenSeries: written.1, comparedSeries: compared.1)
    }

    private static func replay(path: String, options: ImportOptions, survey: TraceSurvey, frontend: Workload.Frontend,
                               sink: any TraceEventSink, plot: Bool, pass: Int,
                               progress: ImportProgress?) throws -> (ImportTally, GrantSeries?) {
        let session = FrontendSession(frontend: frontend, protocolName: options.protocolName, domid: options.domid,
                                      sink: sink, variant: options.variant, oracle: options.oracle)
        let run = ImportRun(path: path, options: options, survey: survey, session: session)
        var series = plot ? GrantSeries() : nil
        if plot {
            run.onRecord = { session in
                let statistics = session.statistics
                series?.add(grantsHeld: session.persistentGrants, segments: statistics.segments,
                            mapOps: statistics.mapOps, unmapHypercalls: statistics.unmapHypercalls)
            }
        }
        try run.run(pass: pass, progress: progress)
        return (run.tally, series)
    }

    /// A name beside `out` (the same file system, so the rename is atomic), hidden and unique to this process.
    static func temporaryPath(beside out: String) -> String {
        let slash = out.lastIndex(of: "/")
        let directory = slash.map { String(out[...$0]) } ?? ""
        let name = slash.map { String(out[out.index(after: $0)...]) } ?? out
        return "\(directory).\(name).import-\(getpid()).tmp"
    }

    private static func describe(_ error: any Error, path: String, out: String, packet: Int?) -> ImportError {
        switch error {
        case let error as ImportError: error
        case let error as PcapWriteError: ImportError(file: out, line: 0, "cannot write packet \(packet ?? 0): \(error.message)")
        case let error as TraceError: ImportError(file: path, line: 0, "the frontend model made an invalid trace (an importer bug): \(error)")
        default: ImportError(file: path, line: 0, "\(error)")
        }
    }
}
