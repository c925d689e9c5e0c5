import Trace
import TracePcap

/// Where a frontend session's events go: a pcap file, or nowhere (a run
/// judged in memory only, for a comparison that needs no file).
public protocol TraceEventSink: AnyObject {
    /// The name events' positions and errors are reported under.
    var path: String { get }
    /// Packets written so far, the header included: the next event is packet `packetCount + 1`.
    var packetCount: Int { get }
    func write(_ kind: TraceEventKind) throws(PcapWriteError)
}

extension PcapTraceWriter: TraceEventSink {}

/// Counts events as a pcap writer would number them and keeps none: the
/// memory of a run does not grow with its length.
public final class DiscardingSink: TraceEventSink {
    public let path: String
    /// Starts at 1: the header a file would have.
    public private(set) var packetCount = 1

    public init(path: String) { self.path = path }

    public func write(_ kind: TraceEventKind) throws(PcapWriteError) { packetCount += 1 }
}
