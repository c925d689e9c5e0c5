import Blkif
import CPcap
import Trace
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why an event, or the file, cannot be written as pcap.
public struct PcapWriteError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Writes a trace in the pcap encoding through libpcap (`pcap_open_dead` with
/// LINKTYPE_USER0, `pcap_dump`), one packet per event, the header packet
/// first. Timestamps are the packet's index in microseconds, so the same
/// events always give the same bytes.
///
/// A ring request is written as the ring bytes of the protocol of the latest
/// connect of its vbd, so a request (or raw) on a vbd never connected cannot
/// be written, nor a raw whose size is not that protocol's request size. A
/// control event is written as its canonical text line and must read back as
/// the same event.
public final class PcapTraceWriter {
    public let path: String
    private var dead: OpaquePointer?
    private var dumper: OpaquePointer?
    /// Packets written so far, the header included: the next packet's number is this + 1.
    public private(set) var packetCount = 0
    /// What the events written so far set up: the protocol of each vbd, and
    /// what printing and reading back a control line depend on.
    private var state = TraceState()
    /// Reads each control line back, to refuse what the reader would not give back.
    private let verifier: TextEventLineParser
    /// The operation of requests not answered yet, per vbd and id, for the
    /// operation byte of their response packets (0 when unknown).
    private var pendingOperations: [UInt16: [UInt64: UInt8]] = [:]
    private var packet: [UInt8] = []

    /// The format version of the file, written into every packet header.
    public let version: Int

    /// Opens `path` for a trace of format `version` (the version of the
    /// trace being converted, or the lowest that carries its events).
    public init(path: String, version: Int = TraceFormat.versions.lowerBound) throws(PcapWriteError) {
        self.path = path
        guard TraceFormat.versions.contains(version) else {
            throw PcapWriteError("\(path): trace format version \(version); this writer knows versions \(TraceFormat.versions.lowerBound)...\(TraceFormat.versions.upperBound)")
        }
        self.version = version
        state = TraceState(formatVersion: version)
        verifier = TextEventLineParser(file: path)
        guard let dead = pcap_open_dead(PcapTraceFormat.linkType, PcapTraceFormat.snapshotLength) else {
            throw PcapWriteError("\(path): libpcap cannot open a LINKTYPE_USER0 handle")
        }
        self.dead = dead
        guard let dumper = pcap_dump_open(dead, path) else {
            throw PcapWriteError("\(path): cannot write: \(String(cString: pcap_geterr(dead)))")
        }
        self.dumper = dumper
        try emit(.control, vbd: 0, Array(TraceFormat.header(version: version).utf8))
    }

    deinit {
        if let dumper { pcap_dump_close(dumper) }
        if let dead { pcap_close(dead) }
    }

    /// Writes one event as one packet.
    public func write(_ kind: TraceEventKind) throws(PcapWriteError) {
        guard kind.formatVersion <= version else {
            throw PcapWriteError("an event of trace format version \(kind.formatVersion) in a file of version \(version)")
        }
        try writePacket(kind)
        state.apply(kind)
    }

    private func writePacket(_ kind: TraceEventKind) throws(PcapWriteError) {
        switch kind {
        case let .request(event):
            let ringProtocol = try connectedProtocol(event.vbd, "request")
            let bytes = ringProtocol.encode(event.blkifRequest)
            pendingOperations[event.vbd, default: [:]][event.id] = event.operation
            try emit(.request, vbd: event.vbd, [event.hold ? PcapTraceFormat.holdFlag : 0] + bytes)
        case let .indirect(event):
            let ringProtocol = try connectedProtocol(event.vbd, "indirect request")
            pendingOperations[event.vbd, default: [:]][event.id] = event.operation
            var body = [(event.hold ? PcapTraceFormat.holdFlag : 0) | PcapTraceFormat.indirectFlag]
            body += ringProtocol.encode(event.blkifRequest)
            for segment in event.segments { body += segment.descriptorBytes }
            try emit(.request, vbd: event.vbd, body)
        case let .raw(event):
            let ringProtocol = try connectedProtocol(event.vbd, "raw request")
            guard event.bytes.count == ringProtocol.request.size else {
                throw PcapWriteError("a raw request of \(event.bytes.count) bytes on vbd \(event.vbd), whose protocol \(ringProtocol) has \(ringProtocol.request.size)-byte requests: a ring-request packet holds exactly one ring slot")
            }
            if let request = try? ringProtocol.decodeRequest(event.bytes) {
                pendingOperations[event.vbd, default: [:]][request.id] = request.operation
            }
            try emit(.request, vbd: event.vbd, [event.hold ? PcapTraceFormat.holdFlag : 0] + event.bytes)
        case let .expect(.response(id, status), vbd):
            let ringProtocol = state.ringProtocol(ofVbd: vbd) ?? .native
            let operation = pendingOperations[vbd]?.removeValue(forKey: id) ?? 0
            try emit(.response, vbd: vbd,
                     ringProtocol.encode(BlkifResponse(id: id, operation: operation, status: status.rawValue)))
        default:
            try writeControl(kind)
        }
    }

    /// Flushes and closes the file; reports a failed write.
    public func close() throws(PcapWriteError) {
        guard let dumper else { return }
        let flushed = pcap_dump_flush(dumper) == 0 && ferror(pcap_dump_file(dumper)) == 0
        pcap_dump_close(dumper)
        self.dumper = nil
        if let dead { pcap_close(dead) }
        dead = nil
        guard flushed else { throw PcapWriteError("\(path): cannot write: \(String(cString: strerror(errno)))") }
    }

    private func connectedProtocol(_ vbd: UInt16, _ what: String) throws(PcapWriteError) -> BlkifProtocol {
        guard let ringProtocol = state.ringProtocol(ofVbd: vbd) else {
            throw PcapWriteError("a \(what) on vbd \(vbd) before any connect of it: pcap stores a request as the ring bytes of its vbd's protocol")
        }
        return ringProtocol
    }

    private func writeControl(_ kind: TraceEventKind) throws(PcapWriteError) {
        // A violation concerns the whole trace; text (and so pcap) keeps it on vbd 0.
        var kind = kind
        if case let .expect(.violation(check, backend), vbd) = kind, vbd != 0 {
            kind = .expect(.violation(check, backend: backend), vbd: 0)
        }
        let line = TextTracePrinter.line(for: kind, after: state)
        if line.unicodeScalars.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "#" }) {
            throw PcapWriteError("the event's text \(Self.shortened(line)) holds a line break or '#', which a control packet cannot carry")
        }
        let back: TraceEvent?
        do throws(TraceError) {
            back = try verifier.parse(line, after: state)
        } catch {
            throw PcapWriteError("the event's text \(Self.shortened(line)) does not read back (\(error.message))")
        }
        guard back?.kind == kind else {
            throw PcapWriteError("the event's text \(Self.shortened(line)) does not read back as the same event")
        }
        if case let .connect(connect) = kind { pendingOperations[connect.vbd] = nil }
        try emit(.control, vbd: kind.vbd, Array(line.utf8))
    }

    private func emit(_ kind: PcapTraceFormat.Kind, vbd: UInt16, _ body: [UInt8]) throws(PcapWriteError) {
        guard let dumper else { throw PcapWriteError("\(path): written after close") }
        packet.removeAll(keepingCapacity: true)
        packet.append(contentsOf: PcapTraceFormat.header(kind, version: UInt8(version), vbd: vbd))
        packet.append(contentsOf: body)
        guard packet.count <= Int(PcapTraceFormat.snapshotLength) else {
            throw PcapWriteError("an event of \(packet.count) bytes; a packet holds at most \(PcapTraceFormat.snapshotLength)")
        }
        var header = pcap_pkthdr()
        header.ts.tv_sec = packetCount / 1_000_000
        header.ts.tv_usec = packetCount % 1_000_000
        header.caplen = UInt32(packet.count)
        header.len = UInt32(packet.count)
        packet.withUnsafeBufferPointer { bytes in
            pcap_dump(UnsafeMutablePointer<UInt8>(dumper), &header, bytes.baseAddress)
        }
        packetCount += 1
    }

    private static func shortened(_ line: String) -> String {
        let cut = line.unicodeScalars.count > 60 ? String(String.UnicodeScalarView(line.unicodeScalars.prefix(60))) + "…" : line
        return "'" + String(cut.map { $0.isNewline ? " " : $0 }) + "'"
    }
}
