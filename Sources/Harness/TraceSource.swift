import Trace
import TracePcap

/// Anything that yields trace events one at a time (text and pcap readers,
/// events already in memory).
public protocol TraceEventSource {
    var file: String { get }
    /// The format version the trace declares; known once the first `next()`
    /// has read the header (converters write their output in it).
    var formatVersion: Int { get }
    mutating func next() throws(TraceError) -> TraceEvent?
}

/// A text trace read line by line.
struct TextTraceSource: TraceEventSource {
    let file: String
    private var reader: TextTraceReader
    init(text: String, file: String) {
        self.file = file
        reader = TextTraceReader(text: text, file: file)
    }
    init(path: String) throws(TraceError) {
        file = path
        reader = try TextTraceReader.open(path: path)
    }
    var formatVersion: Int { reader.state.formatVersion }
    mutating func next() throws(TraceError) -> TraceEvent? { try reader.next() }
}

/// A source over events already in memory (generated, decoded and minimised
/// traces). Events without a position are placed on lines from 2, as if the
/// header stood on line 1.
struct EventListSource: TraceEventSource {
    let file: String
    private var events: [TraceEvent]
    private var index = 0
    init(file: String, events: [TraceEvent]) {
        self.file = file
        self.events = events
    }
    /// A list has no header: the lowest version that carries its events.
    var formatVersion: Int { TraceFormat.version(carrying: events.lazy.map(\.kind)) }
    init(file: String, kinds: [TraceEventKind]) {
        self.init(file: file, events: kinds.enumerated().map { TraceEvent(kind: $1, position: .line($0 + 2, column: 1)) })
    }
    mutating func next() throws(TraceError) -> TraceEvent? {
        guard index < events.count else { return nil }
        defer { index += 1 }
        return events[index]
    }
}

/// The pcap reader streams packet by packet, like the text reader streams lines.
extension PcapTraceReader: TraceEventSource {
    public var formatVersion: Int { state.formatVersion }
}

/// Trace files, opened by their extension.
public enum TraceFile {
    /// Whether the file is in the pcap encoding (`.pcap`, `.pcapng`), else text.
    public static func isPcap(path: String) -> Bool {
        let lowered = path.lowercased()
        return lowered.hasSuffix(".pcap") || lowered.hasSuffix(".pcapng")
    }

    public static func open(path: String) throws(TraceError) -> any TraceEventSource {
        if isPcap(path: path) { return try PcapTraceReader(path: path) }
        return try TextTraceSource(path: path)
    }

    /// Every event of a file, for the commands that need a whole trace at once.
    public static func readAll(path: String) throws(TraceError) -> [TraceEvent] {
        var source = try open(path: path)
        var events: [TraceEvent] = []
        while let event = try source.next() { events.append(event) }
        return events
    }
}
