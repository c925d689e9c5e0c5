import Backend
import Blkif
import Harness
import Trace
import TracePcap
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What each fuzz target checks, kept here so the targets in Fuzz/ stay thin
/// and the unit tests can run the same checks on any input. Each returns nil
/// when the input is fine, else what went wrong (the fuzz target traps with it).
public enum FuzzProperties {
    // MARK: FuzzReplay

    /// Decodes the input, replays it under `variant` and judges it: any
    /// failing verdict is a finding; a trace error is a decoder bug.
    public static func replay(_ input: some Sequence<UInt8>, variant: BackendVariant) -> String? {
        let report = TraceRunner.replay(.events(FuzzDecoder.decode(input), name: "fuzz-input"), variant: variant)
        if let error = report.traceError { return "decoder bug: the decoded trace is invalid: \(error.description)" }
        guard report.verdict == .pass else {
            guard let first = report.failingViolations.first?.violation else {
                return "\(variant.name): expected violations missing: "
                    + report.missingExpectedChecks.map(\.rawValue).joined(separator: ", ")
            }
            return "\(variant.name): \(first.check.rawValue) at event \(first.position): expected \(first.expected); seen \(first.seen)"
        }
        return nil
    }

    /// The backend FuzzReplay runs: `XENBLK_BACKEND` (a name as `replay --backend` takes it), default fixed.
    public static func backendFromEnvironment() -> BackendVariant {
        guard let value = getenv("XENBLK_BACKEND"), case let name = String(cString: value), !name.isEmpty else {
            return .fixed
        }
        do { return try BackendVariant(name: name) } catch { fatalError("XENBLK_BACKEND=\(name): \(error.description)") }
    }

    // MARK: FuzzTraceText

    /// The text reader must accept or reject any bytes with an error, never
    /// crash or hang; what it accepts must print in canonical text that reads
    /// back to the same canonical text.
    public static func traceText(_ input: some Sequence<UInt8>) -> String? {
        let text = String(decoding: Array(input), as: UTF8.self)
        var reader = TextTraceReader(text: text, file: "fuzz.trace")
        var events: [TraceEventKind] = []
        do {
            while let event = try reader.next() { events.append(event.kind) }
        } catch {
            return nil   // rejected with an error: what the reader must do with garbage
        }
        return canonicalTextReadsBack(events)
    }

    /// Printing accepted events, reading them back and printing again gives the same text.
    static func canonicalTextReadsBack(_ events: [TraceEventKind]) -> String? {
        let printed = TextTracePrinter.render(events)
        let again: [TraceEvent]
        do { again = try TextTraceReader.parseAll(text: printed, file: "canonical.trace") } catch {
            return "the canonical text of an accepted trace does not read back: \(error.description)\n\(printed)"
        }
        let reprinted = TextTracePrinter.render(again.map(\.kind))
        guard reprinted == printed else {
            return "canonical text is not a fixed point:\n\(printed)---\n\(reprinted)"
        }
        return nil
    }

    // MARK: FuzzPcap

    /// The pcap reader must accept or reject any file with an error, never
    /// crash or hang. The bytes go through a file, as the reader reads paths.
    public static func pcap(_ input: some Sequence<UInt8>) -> String? {
        let bytes = Array(input)
        let path = "\(scratchPrefix)-\(pthread_self()).pcap"
        defer { unlink(path) }
        guard let file = fopen(path, "wb") else { return nil }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
        guard written == bytes.count else { return nil }
        var events: [TraceEventKind] = []
        do {
            let reader = try PcapTraceReader(path: path)
            while let event = try reader.next() { events.append(event.kind) }
        } catch {
            return nil
        }
        return canonicalTextReadsBack(events)
    }

    /// Scratch files are per process and thread (libFuzzer's -fork runs processes; tests run threads).
    static let scratchPrefix: String = {
        let directory = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        return "\(directory)/xenblk-fuzzpcap-\(getpid())"
    }()

    // MARK: FuzzRequestABI

    /// How an ABI input picks what its bytes are: byte 0, bits 0-1 the
    /// protocol (native, x86_32, x86_64, native), bit 2 a response instead of
    /// a request; the rest are the slot's bytes (cut or zero-padded to size).
    public static func abiInput(protocol ringProtocol: BlkifProtocol, response: Bool, bytes: [UInt8]) -> [UInt8] {
        let index = UInt8(BlkifProtocol.allCases.firstIndex(of: ringProtocol)!)
        return [index | (response ? 4 : 0)] + bytes
    }

    /// Ring bytes decoded and re-encoded in each protocol must round-trip:
    /// every field's bytes come back and only padding is lost; the decoded
    /// request re-decodes to itself, carries over to every other ABI, and is
    /// the encoding of the canonical request event the trace formats use.
    public static func requestABI(_ input: some Sequence<UInt8>) -> String? {
        let all = Array(input)
        guard let selector = all.first else { return nil }
        let protocols: [BlkifProtocol] = [.native, .x86_32, .x86_64, .native]
        let ringProtocol = protocols[Int(selector & 3)]
        let response = selector & 4 != 0
        let size = response ? ringProtocol.response.size : ringProtocol.request.size
        var bytes = Array(all.dropFirst().prefix(size))
        bytes += [UInt8](repeating: 0, count: size - bytes.count)
        return response ? responseRoundTrip(bytes, ringProtocol) : requestRoundTrip(bytes, ringProtocol)
    }

    static func requestRoundTrip(_ bytes: [UInt8], _ ringProtocol: BlkifProtocol) -> String? {
        let request: BlkifRequest
        do { request = try ringProtocol.decodeRequest(bytes) } catch { return "\(ringProtocol): a slot-sized request does not decode: \(error)" }
        let encoded = ringProtocol.encode(request)
        let mask = fieldMask(ringProtocol, isDiscard: request.isDiscard)
        for index in bytes.indices where encoded[index] != (mask[index] ? bytes[index] : 0) {
            return "\(ringProtocol) request byte \(index): \(TextTracePrinter.hex(bytes)) re-encodes as \(TextTracePrinter.hex(encoded))"
        }
        guard let again = try? ringProtocol.decodeRequest(encoded), again == request else {
            return "\(ringProtocol): the re-encoded request decodes differently: \(TextTracePrinter.hex(encoded))"
        }
        for other in BlkifProtocol.allCases {
            guard let carried = try? other.decodeRequest(other.encode(request)), carried == request else {
                return "\(ringProtocol) → \(other): the request does not survive the other ABI: \(TextTracePrinter.hex(bytes))"
            }
        }
        guard let event = RequestEvent(ringBytes: encoded, protocol: ringProtocol),
              ringProtocol.encode(event.blkifRequest) == encoded,
              ringProtocol.encode(event.canonical.blkifRequest) == encoded else {
            return "\(ringProtocol): no canonical request event encodes to \(TextTracePrinter.hex(encoded))"
        }
        return nil
    }

    static func responseRoundTrip(_ bytes: [UInt8], _ ringProtocol: BlkifProtocol) -> String? {
        let response: BlkifResponse
        do { response = try ringProtocol.decodeResponse(bytes) } catch { return "\(ringProtocol): a slot-sized response does not decode: \(error)" }
        let encoded = ringProtocol.encode(response)
        let layout = ringProtocol.response
        let kept = Set(Array(layout.id..<(layout.id + 8)) + [layout.operation, layout.status, layout.status + 1])
        for index in bytes.indices where encoded[index] != (kept.contains(index) ? bytes[index] : 0) {
            return "\(ringProtocol) response byte \(index): \(TextTracePrinter.hex(bytes)) re-encodes as \(TextTracePrinter.hex(encoded))"
        }
        guard let again = try? ringProtocol.decodeResponse(encoded), again == response else {
            return "\(ringProtocol): the re-encoded response decodes differently: \(TextTracePrinter.hex(encoded))"
        }
        return nil
    }

    /// The bytes of a request slot that carry a field (docs/design.md §3); the rest is padding.
    static func fieldMask(_ ringProtocol: BlkifProtocol, isDiscard: Bool) -> [Bool] {
        let layout = ringProtocol.request
        var mask = [Bool](repeating: false, count: layout.size)
        func keep(_ offset: Int, _ count: Int) { for index in offset..<(offset + count) { mask[index] = true } }
        keep(layout.operation, 1)
        keep(layout.nrSegments, 1)
        keep(layout.handle, 2)
        keep(layout.id, 8)
        keep(layout.sectorNumber, 8)
        if isDiscard {
            keep(layout.segments, 8)
        } else {
            for slot in 0..<Blkif.maxSegmentsPerRequest { keep(layout.segments + slot * blkifSegmentSize, 6) }
        }
        return mask
    }
}
