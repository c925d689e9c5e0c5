import Blkif
import CPcap
import Trace
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a trace in the pcap encoding — a pcap or a pcapng file, both through
/// libpcap — one packet per `next()`, so a trace of any length is read in
/// constant memory. Packets are numbered from 1 (the header packet) as
/// Wireshark numbers them; events and errors carry `.packet(n)`, and `n` 0
/// means the file as a whole.
///
/// Per packet: kind 1 is parsed with the text parser (one event line); kind 2
/// becomes a `request` when its bytes are exactly the encoding of one in the
/// protocol of the latest connect of its vbd, and `raw` otherwise; kind 3
/// becomes `expect response`. Anything else is a one-line `TraceError`.
public final class PcapTraceReader {
    public let file: String
    private let pcap: OpaquePointer
    /// Everything that changes per packet, in one struct the reader owns
    /// through a pointer. A class's `var` is checked for exclusive access at
    /// run time on every touch (swift_beginAccess and its access set, some 80
    /// instructions per `next()`); a `let` pointer's pointee is not. That is
    /// safe here: only the reader's own methods reach the stream, and none of
    /// them calls back into the reader while it is changing it.
    private let packets: UnsafeMutablePointer<PacketStream>

    /// The number of the packet last read.
    public var packetNumber: Int { packets.pointee.packetNumber }
    /// What the events read so far set up: the protocol of the latest connect
    /// of each vbd sizes and decodes ring bytes; the latest domain is the
    /// default `domid=` of control text.
    public var state: TraceState { packets.pointee.state }

    /// Opens a pcap or pcapng file; checks the link type.
    public init(path: String) throws(TraceError) {
        file = path
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let handle = Self.openBuffered(path) ?? pcap_open_offline(path, &errorBuffer) else {
            let reason = String(decoding: errorBuffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw TraceError(file: path, position: .packet(0),
                             message: "cannot read the pcap: \(PacketStream.oneLine(reason)); expected a readable pcap or pcapng file")
        }
        let linkType = pcap_datalink(handle)
        guard linkType == PcapTraceFormat.linkType else {
            let name = pcap_datalink_val_to_name(linkType).map { " (" + String(cString: $0) + ")" } ?? ""
            pcap_close(handle)
            throw TraceError(file: path, position: .packet(0),
                             message: "link type \(linkType)\(name); expected LINKTYPE_USER0 (147), the link type of xenblk traces")
        }
        pcap = handle
        packets = .allocate(capacity: 1)
        packets.initialize(to: PacketStream(file: path, pcap: handle))
    }

    deinit {
        packets.deinitialize(count: 1)
        packets.deallocate()
        pcap_close(pcap)
    }

    /// libpcap reads a packet as two `fread`s (its record header, then its
    /// bytes) from a stdio stream with the default buffer of a page or so,
    /// which costs a `read` system call every few dozen packets. The file is
    /// opened here with a larger buffer and handed to libpcap, which reads it
    /// as before. Any failure returns nil and `pcap_open_offline` opens the
    /// path as it always did, so its error messages stay exactly its own.
    private static func openBuffered(_ path: String) -> OpaquePointer? {
        guard path != "-", let file = fopen(path, "rb") else { return nil }
        guard setvbuf(file, nil, _IOFBF, readBufferSize) == 0 else {
            fclose(file)
            return nil
        }
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let handle = pcap_fopen_offline(file, &errorBuffer) else {
            fclose(file)   // libpcap leaves a stream it could not read to its opener
            return nil
        }
        return handle      // pcap_close closes the stream
    }

    /// 256 KiB: a few thousand packets of a trace per system call.
    private static let readBufferSize = 256 * 1024

    /// The next event, or nil at the end of the trace.
    public func next() throws(TraceError) -> TraceEvent? {
        try packets.pointee.next()
    }

    /// Every event of a file, for callers that want them all at once.
    public static func readAll(path: String) throws(TraceError) -> [TraceEvent] {
        let reader = try PcapTraceReader(path: path)
        var events: [TraceEvent] = []
        while let event = try reader.next() { events.append(event) }
        return events
    }
}

/// The packets of one open pcap handle (which `PcapTraceReader` owns and closes), decoded one by one.
private struct PacketStream {
    let file: String
    let pcap: OpaquePointer
    /// The number of the packet last read.
    private(set) var packetNumber = 0
    private var sawHeader = false
    private var ended = false
    private(set) var state = TraceState()
    private let parser: TextEventLineParser
    /// Errors are final, as for the text reader: no guessing where to resume.
    private var failure: TraceError?

    init(file: String, pcap: OpaquePointer) {
        self.file = file
        self.pcap = pcap
        parser = TextEventLineParser(file: file)
    }

    /// The next event, or nil at the end of the trace.
    mutating func next() throws(TraceError) -> TraceEvent? {
        if let failure { throw failure }
        do throws(TraceError) {
            return try readEvent()
        } catch {
            failure = error
            throw error
        }
    }

    private func error(_ number: Int, _ message: String) -> TraceError {
        TraceError(file: file, position: .packet(number), message: message)
    }

    private mutating func readEvent() throws(TraceError) -> TraceEvent? {
        while !ended {
            var header: UnsafeMutablePointer<pcap_pkthdr>?
            var data: UnsafePointer<UInt8>?
            let status = pcap_next_ex(pcap, &header, &data)
            let number = packetNumber + 1
            guard status == 1, let header, let data else {
                if status == PCAP_ERROR_BREAK {   // the end of the file
                    ended = true
                    guard sawHeader else {
                        throw error(number, "the trace ends before its header; expected a control packet '\(TextEventLineParser.header)' first")
                    }
                    return nil
                }
                let reason = status == PCAP_ERROR ? Self.oneLine(String(cString: pcap_geterr(pcap))) : "libpcap status \(status)"
                throw error(number, "cannot read the packet: \(reason); expected a whole packet record")
            }
            packetNumber = number
            let captured = Int(header.pointee.caplen)
            let length = Int(header.pointee.len)
            guard captured == length else {
                throw error(number, "the packet was captured short (\(captured) of \(length) bytes); expected whole packets")
            }
            if let event = try decode(UnsafeBufferPointer(start: data, count: captured), number) { return event }
        }
        return nil
    }

    /// The event of one packet; nil for the header packet.
    private mutating func decode(_ packet: UnsafeBufferPointer<UInt8>, _ number: Int) throws(TraceError) -> TraceEvent? {
        guard packet.count >= PcapTraceFormat.headerSize else {
            throw error(number, "short packet of \(packet.count) bytes; expected at least the 4-byte header (kind, version, vbd)")
        }
        let version = packet[1]
        // The header packet sets the file's version; every later packet repeats it.
        if sawHeader {
            guard version == UInt8(state.formatVersion) else {
                throw error(number, "packet format version \(version) in a trace of version \(state.formatVersion); expected \(state.formatVersion), the version of its header packet")
            }
        } else {
            guard PcapTraceFormat.versions.contains(version) else {
                throw error(number, "unknown packet format version \(version); expected \(PcapTraceFormat.versions.lowerBound) to \(PcapTraceFormat.versions.upperBound)")
            }
        }
        guard let kind = PcapTraceFormat.Kind(rawValue: packet[0]) else {
            throw error(number, "unknown packet kind \(packet[0]); expected 1 (control), 2 (ring request) or 3 (ring response)")
        }
        let vbd = UInt16(packet[2]) | UInt16(packet[3]) << 8
        // The body stays in libpcap's buffer (valid until the next packet is
        // read); only what an event keeps is copied out of it.
        let body = UnsafeBufferPointer(rebasing: packet[PcapTraceFormat.headerSize...])
        guard sawHeader else {
            try checkHeader(kind, version: Int(version), vbd: vbd, body, number)
            state = TraceState(formatVersion: Int(version))
            sawHeader = true
            return nil
        }
        let eventKind: TraceEventKind
        switch kind {
        case .control:
            eventKind = try control(body, vbd: vbd, number)
            state.apply(eventKind)
        case .request:
            eventKind = try request(body, vbd: vbd, number)   // takes itself into account
        case .response:
            // `apply` changes nothing for an expectation: no state to update.
            eventKind = try response(body, vbd: vbd, number)
        }
        return TraceEvent(kind: eventKind, position: .packet(number))
    }

    /// The header packet: its text is the header of the version its packet header gives.
    private func checkHeader(_ kind: PcapTraceFormat.Kind, version: Int, vbd: UInt16, _ body: UnsafeBufferPointer<UInt8>,
                             _ number: Int) throws(TraceError) {
        let expected = TraceFormat.header(version: version)
        guard kind == .control else {
            throw error(number, "a kind-\(kind.rawValue) packet where the header belongs; expected a control packet '\(expected)' first")
        }
        guard let text = Self.utf8(body) else {
            throw error(number, "control text that is not UTF-8 where the header belongs; expected '\(expected)' first")
        }
        let words = text.split(separator: " ", omittingEmptySubsequences: false)
        if words.count == 2, words[0] == "xenblk-trace", words[1] != "\(version)" {
            throw error(number, "trace version \(Self.quoted(String(words[1]))) in a header packet of format version \(version); expected '\(expected)'")
        }
        guard text == expected else {
            throw error(number, "control text \(Self.quoted(text)) where the header belongs; expected '\(expected)' first")
        }
        guard vbd == 0 else {
            throw error(number, "the header packet names vbd \(vbd); expected vbd 0")
        }
    }

    private func control(_ body: UnsafeBufferPointer<UInt8>, vbd: UInt16, _ number: Int) throws(TraceError) -> TraceEventKind {
        // The common lines (`complete` above all) are read from the bytes in
        // place. Plain ASCII without line breaks or '#' passes every check
        // below, so only what the quick reader accepts skips them.
        if Self.isPlainLine(body), let kind = parser.parseQuickly(body, after: state) {
            try checkControl(kind, vbd: vbd, number)
            return kind
        }
        return try controlThroughText(body, vbd: vbd, number)
    }

    /// The control packets the quick reader does not take, through the
    /// precise text parser. Kept out of `control` so the common path does not
    /// set up (and destroy through the runtime) this path's optional event.
    @inline(never)
    private func controlThroughText(_ body: UnsafeBufferPointer<UInt8>, vbd: UInt16, _ number: Int) throws(TraceError) -> TraceEventKind {
        guard let text = Self.utf8(body) else {
            throw error(number, "control text that is not UTF-8; expected an event's canonical text line")
        }
        if let bad = text.unicodeScalars.first(where: { $0 == "\n" || $0 == "\r" || $0 == "#" }) {
            let what = bad == "#" ? "a '#'" : "a line break"
            throw error(number, "control text with \(what) in it; expected one event line without comment or newline")
        }
        let parsed: TraceEvent?
        do throws(TraceError) {
            parsed = try parser.parse(text, after: state)
        } catch {
            let column = if case let .line(_, column) = error.position { column } else { 0 }
            throw self.error(number, "in the control text at column \(column): \(error.message)")
        }
        guard let kind = parsed?.kind else {
            throw error(number, "empty control packet; expected an event's canonical text line")
        }
        try checkControl(kind, vbd: vbd, number)
        return kind
    }

    /// Printable ASCII and tabs: valid UTF-8 with no line break and no '#'.
    private static func isPlainLine(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        for byte in bytes where byte > 0x7E || (byte < 0x20 && byte != UInt8(ascii: "\t")) || byte == UInt8(ascii: "#") {
            return false
        }
        return true
    }

    /// What a control packet may not carry, and the vbd it must agree on.
    /// (It only checks: handing the event back copied it, and the caller's
    /// own copy was then destroyed through the runtime.)
    private func checkControl(_ kind: TraceEventKind, vbd: UInt16, _ number: Int) throws(TraceError) {
        switch kind {
        case .request, .raw:
            throw error(number, "a ring request written as control text; expected it as a kind-2 packet of ring bytes")
        case .expect(.response, _):
            throw error(number, "an expected response written as control text; expected it as a kind-3 packet of ring bytes")
        default:
            break
        }
        let textVbd = kind.vbd
        guard textVbd == vbd else {
            throw error(number, "the packet header names vbd \(vbd) but its text vbd \(textVbd); expected the same vbd")
        }
    }

    /// The event of a ring-request packet, already applied to `state`.
    private mutating func request(_ body: UnsafeBufferPointer<UInt8>, vbd: UInt16, _ number: Int) throws(TraceError) -> TraceEventKind {
        guard let flags = body.first else {
            throw error(number, "short packet: a ring-request packet without its flags byte; expected flags and the request's ring bytes")
        }
        let known = state.formatVersion >= 2 ? PcapTraceFormat.holdFlag | PcapTraceFormat.indirectFlag : PcapTraceFormat.holdFlag
        guard flags & ~known == 0 else {
            let expected = state.formatVersion >= 2 ? "bits 0 (hold) and 1 (indirect) only" : "0 or 1 (bit 0: hold)"
            throw error(number, "unknown flags 0x\(String(flags, radix: 16)) in a ring-request packet of version \(state.formatVersion); expected \(expected)")
        }
        guard let ringProtocol = state.ringProtocol(ofVbd: vbd) else {
            throw error(number, "a ring request on vbd \(vbd) before its connect; expected a connect control packet for vbd \(vbd) first")
        }
        if flags & PcapTraceFormat.indirectFlag != 0 {
            return try indirect(body, ringProtocol: ringProtocol, vbd: vbd, hold: flags & PcapTraceFormat.holdFlag != 0, number)
        }
        let bytes = UnsafeBufferPointer(rebasing: body.dropFirst())
        let size = ringProtocol.request.size
        guard bytes.count == size else {
            throw error(number, "\(bytes.count < size ? "short" : "long") packet: a ring request of \(bytes.count) bytes on vbd \(vbd); expected the \(size) bytes of a \(ringProtocol) request")
        }
        let hold = flags & PcapTraceFormat.holdFlag != 0
        if let request = RequestEvent(canonicalRingBytes: bytes, protocol: ringProtocol, vbd: vbd, hold: hold) {
            state.applyRequest(id: request.id, vbd: vbd, hold: hold)
            return .request(request)
        }
        let raw = TraceEventKind.raw(RawRequestEvent(bytes: Array(bytes), vbd: vbd, hold: hold))
        state.apply(raw)
        return raw
    }

    /// An indirect request packet: the flags, the ring slot, then 8 bytes per
    /// descriptor. Only the canonical form of an `indirect` event is carried
    /// (a slot that is not one is a `raw` request, and the guest's own page
    /// bytes are `write` events), so anything else is refused, never guessed.
    private mutating func indirect(_ body: UnsafeBufferPointer<UInt8>, ringProtocol: BlkifProtocol, vbd: UInt16,
                                   hold: Bool, _ number: Int) throws(TraceError) -> TraceEventKind {
        let size = ringProtocol.request.size
        let rest = body.count - 1 - size
        guard rest >= 0, rest % blkifSegmentSize == 0 else {
            throw error(number, "an indirect-request packet of \(body.count - 1) bytes on vbd \(vbd); expected the \(size) bytes of a \(ringProtocol) request and 8 bytes per descriptor")
        }
        let slot = Array(body[1...size])
        var segments: [BlkifSegment] = []
        segments.reserveCapacity(rest / blkifSegmentSize)
        var offset = 1 + size
        while offset < body.count {
            guard let segment = BlkifSegment(descriptorBytes: body[offset..<offset + blkifSegmentSize]) else {
                throw error(number, "descriptor \(segments.count) has non-zero padding; expected gref, first_sect, last_sect and two zero bytes")
            }
            segments.append(segment)
            offset += blkifSegmentSize
        }
        guard segments.count <= IndirectRequestEvent.maxSegments,
              let event = IndirectRequestEvent(ringBytes: slot, protocol: ringProtocol, segments: segments, vbd: vbd, hold: hold)
        else {
            throw error(number, "an indirect-request packet whose slot is not the canonical encoding of an indirect request with \(segments.count) descriptors; expected operation 6, zero padding and enough indirect pages for the descriptors")
        }
        let kind = TraceEventKind.indirect(event)
        state.apply(kind)
        return kind
    }

    /// Padding and the operation byte are not judged: a ring slot's padding
    /// may hold whatever the backend's struct had, and `expect response`
    /// compares id and status only.
    private func response(_ body: UnsafeBufferPointer<UInt8>, vbd: UInt16, _ number: Int) throws(TraceError) -> TraceEventKind {
        // A response needs no connect (an `expect response` may stand
        // anywhere); before any connect of its vbd it has the native layout.
        let ringProtocol = state.ringProtocol(ofVbd: vbd) ?? .native
        let layout = ringProtocol.response
        guard body.count == layout.size else {
            throw error(number, "\(body.count < layout.size ? "short" : "long") packet: a ring response of \(body.count) bytes on vbd \(vbd); expected the \(layout.size) bytes of a \(ringProtocol) response")
        }
        // Read in place, as `decodeResponse` reads a copy: little-endian id and status.
        let raw = UnsafeRawBufferPointer(body)
        let id = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: layout.id, as: UInt64.self))
        let code = Int16(littleEndian: raw.loadUnaligned(fromByteOffset: layout.status, as: Int16.self))
        guard let status = BlkifResponseStatus(rawValue: code) else {
            throw error(number, "response status \(code) is not a BLKIF_RSP; expected 0 (okay), -1 (error) or -2 (eopnotsupp)")
        }
        return .expect(.response(id: id, status: status), vbd: vbd)
    }

    /// The text of bytes that are valid UTF-8, else nil.
    private static func utf8(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        String(validating: bytes, as: UTF8.self)
    }

    static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }

    /// Text from a packet, quoted, its control characters escaped, cut at 40.
    private static func quoted(_ text: String) -> String {
        var out = "'"
        for (count, scalar) in text.unicodeScalars.enumerated() {
            if count == 40 { out += "…"; break }
            if scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .format {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "'"
    }
}
