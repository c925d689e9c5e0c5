import Blkif

/// Prints events in canonical text: one space between tokens, keys in the
/// format's order, defaults omitted, numbers in decimal, requests in their
/// canonical form (see `RequestEvent.canonical`). A line depends on what the
/// trace set up before it: a `domid=` equal to the latest connect's is a
/// default too, and a `raw` request is printed as the `request` it encodes
/// when its bytes are exactly that request's encoding in the protocol of the
/// latest connect of its vbd — so canonical text → pcap → text is the
/// identity. The printer keeps that state; `line(for:after:)` takes it from
/// a caller that keeps its own.
public struct TextTracePrinter: Sendable {
    public private(set) var state = TraceState()

    public init() {}

    /// The header line of a trace of format `version`; it starts a new
    /// trace, so it forgets every connect.
    public mutating func header(version: Int = TraceFormat.versions.lowerBound) -> String {
        state = TraceState(formatVersion: version)
        return TraceFormat.header(version: version)
    }

    /// The canonical line of one event, without a newline, after the events
    /// printed so far.
    public mutating func line(for kind: TraceEventKind) -> String {
        defer { state.apply(kind) }
        return Self.line(for: kind, after: state)
    }

    /// The canonical line of one event, without a newline, after what
    /// `state` says the trace has set up. `expect` prints `vbd=` when it is
    /// not 0 (on response and persistent; an extension of format version 1).
    /// A frontend-key value no word can spell prints as `frontend-key-hex`.
    /// Values the text cannot carry (a raw request of no bytes) are printed
    /// as they are and will not read back.
    /// Whether `value` reads back as the one word after `frontend-key NAME`:
    /// not empty, and nothing the lexer splits at or takes for a comment.
    static func isOneWord(_ value: String) -> Bool {
        !value.isEmpty && !value.utf8.contains { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A || $0 == 0x23 }
    }

    public static func line(for kind: TraceEventKind, after state: TraceState) -> String {
        let latestDomid = state.latestDomid
        switch kind {
        case let .frontendKey(name, value):
            guard Self.isOneWord(value) else {
                let hex = Self.hex(value.utf8)
                return hex.isEmpty ? "frontend-key-hex \(name)" : "frontend-key-hex \(name) \(hex)"
            }
            return "frontend-key \(name) \(value)"
        case let .connect(event):
            return Self.words(for: event).line
        case let .grant(event):
            var words = Words("grant")
            words.key("gref", Self.grefs(event.grefs))
            words.flag("ro", event.readOnly)
            words.key("domid", event.domid, unless: latestDomid)
            return words.line
        case let .revoke(event):
            var words = Words("revoke")
            words.key("gref", Self.grefs(event.grefs))
            words.key("domid", event.domid, unless: latestDomid)
            return words.line
        case let .fail(fault):
            return Self.words(for: fault).line
        case .request, .raw:
            switch kind.canonical(after: state) {
            case .request(let request): return Self.words(for: request).line
            case .raw(let raw): return Self.words(for: raw).line
            default: preconditionFailure("the canonical form of a ring request is a ring request")
            }
        case let .complete(id, vbd):
            var words = Words("complete")
            words.key("id", id)
            words.key("vbd", vbd, unless: 0)
            return words.line
        case let .expect(expectation, vbd):
            return Self.words(for: expectation, vbd: vbd).line
        case let .disconnect(vbd):
            var words = Words("disconnect")
            words.key("vbd", vbd, unless: 0)
            return words.line
        case let .indirect(request):
            return Self.words(for: request.canonical).line
        case let .write(event):
            var words = Words("write")
            words.key("gref", event.gref)
            words.key("offset", event.offset)
            words.key("hex", Self.hex(event.bytes))
            words.key("domid", event.domid, unless: latestDomid)
            if let afterReads = event.afterReads { words.key("after-reads", afterReads) }
            return words.line
        case let .tick(milliseconds):
            var words = Words("tick")
            if milliseconds % 1000 == 0 { words.key("s", milliseconds / 1000) } else { words.key("ms", milliseconds) }
            return words.line
        case let .parameter(parameter, value):
            var words = Words("param")
            words.key(parameter.rawValue, value)
            return words.line
        case let .generations(names):
            return (["generations"] + names).joined(separator: " ")
        }
    }

    /// A whole trace: the header and one line per event, each ending in "\n";
    /// the header declares the lowest version that carries the events.
    public static func render(_ events: [TraceEventKind]) -> String {
        var printer = TextTracePrinter()
        var text = printer.header(version: TraceFormat.version(carrying: events)) + "\n"
        for event in events { text += printer.line(for: event) + "\n" }
        return text
    }

    private static func words(for event: RawRequestEvent) -> Words {
        var words = Words("raw")
        words.key("hex", Self.hex(event.bytes))
        words.key("vbd", event.vbd, unless: 0)
        words.flag("hold", event.hold)
        return words
    }

    private static func words(for event: ConnectEvent) -> Words {
        var words = Words("connect")
        words.key("domid", event.domid)
        words.key("protocol", event.protocolName.rawValue, unless: BlkifProtocol.native.rawValue)
        if let persistent = event.persistent { words.key("persistent", bit(persistent)) }
        words.key("backend-persistent", bit(event.backendPersistent), unless: "1")
        if let limit = event.maxPersistent { words.key("max-persistent", limit) }
        words.key("sectors", event.sectors, unless: ConnectEvent(domid: 1).sectors)
        words.key("flush", bit(event.flush), unless: "1")
        words.key("discard", bit(event.discard), unless: "0")
        words.key("vbd", event.vbd, unless: 0)
        if event.hotplugAfterConnect { words.key("hotplug", "after") }
        return words
    }

    private static func words(for fault: FaultEvent) -> Words {
        switch fault {
        case let .mapGref(gref, times, status):
            var words = Words("fail", "map")
            words.key("gref", gref)
            words.key("times", times, unless: 1)
            words.key("status", status.traceName)
            return words
        case let .mapNth(nth, status):
            var words = Words("fail", "map")
            words.key("nth", nth)
            words.key("status", status.traceName)
            return words
        case let .allocNth(nth):
            var words = Words("fail", "alloc")
            words.key("nth", nth)
            return words
        case let .hypercallNth(nth):
            var words = Words("fail", "hypercall")
            words.key("nth", nth)
            return words
        }
    }

    private static func words(for event: RequestEvent) -> Words {
        var words = Words("request")
        words.key("id", event.id)
        words.key("op", operationName(event.operation))
        words.key("sector", event.sector)
        for segment in event.segments { words.key("seg", segment.description) }
        if let nr = event.nrSegments { words.key("nr", nr, unless: UInt8(truncatingIfNeeded: event.segments.count)) }
        if let sectors = event.nrSectors { words.key("nr-sectors", sectors) }
        words.key("handle", event.handle, unless: 0)
        words.key("vbd", event.vbd, unless: 0)
        words.flag("hold", event.hold)
        return words
    }

    private static func words(for event: IndirectRequestEvent) -> Words {
        var words = Words("indirect")
        words.key("id", event.id)
        words.key("op", operationName(event.operation))
        words.key("sector", event.sector)
        for segment in event.segments { words.key("seg", segment.description) }
        if let nr = event.nrSegments { words.key("nr", nr, unless: UInt16(truncatingIfNeeded: event.segments.count)) }
        for page in event.pages { words.key("page", page) }
        words.key("handle", event.handle, unless: 0)
        words.key("vbd", event.vbd, unless: 0)
        words.flag("hold", event.hold)
        return words
    }

    private static func words(for expectation: Expectation, vbd: UInt16) -> Words {
        switch expectation {
        case let .response(id, status):
            var words = Words("expect", "response")
            words.key("id", id)
            words.key("status", status.traceName)
            words.key("vbd", vbd, unless: 0)
            return words
        case let .persistent(count):
            var words = Words("expect")
            words.key("persistent", count)
            words.key("vbd", vbd, unless: 0)
            return words
        case let .violation(check, backend):
            var words = Words("expect", "violation", check.rawValue)
            if let backend { words.key("backend", backend) }
            return words
        }
    }

    private static func grefs(_ range: ClosedRange<UInt32>) -> String {
        range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound)..\(range.upperBound)"
    }

    private static func bit(_ value: Bool) -> String { value ? "1" : "0" }

    /// Bytes as lower-case hex, two digits each, as traces write them (and
    /// as reports quote bytes, with a separator).
    public static func hex(_ bytes: some Sequence<UInt8>, separator: String = "") -> String {
        let digits = Array("0123456789abcdef")
        return bytes.map { String([digits[Int($0 >> 4)], digits[Int($0 & 0xF)]]) }.joined(separator: separator)
    }
}

/// The tokens of one line being printed.
private struct Words {
    private var items: [String]

    init(_ leading: String...) {
        items = leading
    }

    mutating func key(_ name: String, _ value: some CustomStringConvertible) {
        items.append("\(name)=\(value)")
    }

    /// Omits the key when the value is the default.
    mutating func key<Value: Equatable & CustomStringConvertible>(_ name: String, _ value: Value, unless standard: Value?) {
        if value != standard { key(name, value) }
    }

    mutating func flag(_ name: String, _ present: Bool) {
        if present { items.append(name) }
    }

    var line: String { items.joined(separator: " ") }
}
