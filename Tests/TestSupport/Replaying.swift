import Backend
import Harness
import Trace

/// Replays a text trace written inline; the header is added.
public func replay(_ text: String, backend: String = "fixed", oracle: Bool = true) throws -> ReplayReport {
    TraceRunner.replay(.text(TextEventLineParser.header + "\n" + text, name: "inline.trace"),
                       variant: try BackendVariant(name: backend), options: ReplayOptions(oracle: oracle))
}

/// Replays events built in a test.
public func replay(_ events: [TraceEventKind], backend: BackendVariant = .fixed, name: String = "events") -> ReplayReport {
    TraceRunner.replay(.events(events, name: name), variant: backend)
}
