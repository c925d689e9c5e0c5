import Blkif
import Trace

// MARK: - The fuzz input format, versions 1 and 2
//
// Any byte string is a valid fuzz input: `FuzzDecoder.decode` turns it into a
// sequence of trace events that always replays without a trace error. The
// format is stable: a saved crash file keeps its meaning as the decoder
// grows. New choices take reserved opcode values (no-ops until then) in a
// new format version, and every version stays decodable: a file saved under
// version N is decoded with version N (`replay decode --fuzz-format N`).
// The parameter bytes of an existing choice never change meaning.
// Expectation events are never produced.
//
// Version 2 adds `connect again` (0x90...0x93); version 3 adds the events of
// trace format 2: indirect requests (0x94...0x9F), guest writes (0xA0...0xA3),
// ticks (0xA4...0xA7) and module parameters (0xA8...0xAB); version 4 adds a
// connect whose hotplug script runs after the frontend connected
// (0xAC...0xAD, `connect hotplug=after`). Version 1 is everything else
// below, with 0x90...0xFF reserved.
//
// An input is a sequence of *choices*. Each starts with one opcode byte; its
// parameters follow. Reading past the end of the input yields zero bytes, so a
// truncated choice is still a choice. Decoding stops at the end of the input,
// after `maxEvents` events, or after `maxInput` bytes.
//
// Opcode table (the weights favour requests):
//
// | opcode      | choice        | parameters (in order)                                      |
// |-------------|---------------|------------------------------------------------------------|
// | 0x00...0x3F | request       | request body (below), with its hold and vbd bits            |
// | 0x40...0x4F | grant         | gref pick(G), shape, [domid pick(D)], [count pick(C)]       |
// | 0x50...0x5B | complete      | vbd index, held index                                      |
// | 0x5C...0x67 | connect       | flags, vbd pick(V), domid pick(D), max-persistent pick(M), sectors pick(S) |
// | 0x68...0x6F | disconnect    | vbd index                                                  |
// | 0x70...0x7F | fail          | kind, then per kind (below)                                |
// | 0x80...0x83 | revoke        | gref pick(G), shape, [domid pick(D)], [count pick(C)]       |
// | 0x84...0x8B | raw           | flags, then 112 bytes (mode 0) or request body + patches (mode 1) |
// | 0x8C...0x8F | frontend-key  | key byte                                                   |
// | 0x90...0x93 | connect again | vbd index, flags                                           |
// | 0x94...0x9F | indirect      | flags, [op byte], [nr u16], [handle u16], id pick(I), sector pick(K), count pick(X), per descriptor gref pick(G) and sectors byte, then per page needed a gref pick(G) |
// | 0xA0...0xA3 | write         | gref pick(G), offset pick(O), length byte, bytes, after-reads pick(R) |
// | 0xA4...0xA7 | tick          | milliseconds pick(MS)                                      |
// | 0xA8...0xAB | param         | parameter byte, value pick (per parameter)                 |
// | 0xAC...0xAD | connect late  | as connect; the event says hotplug=after (version 4)       |
// | 0xAE...0xFF | reserved      | none: a no-op, for later choices                           |
//
// A *pick* is one byte b: 0xFC, 0xFD, 0xFE, 0xFF are followed by an explicit
// little-endian value of 1, 2, 4, 8 bytes; any other b picks pool[b % pool.count]
// from the field's pool of interesting values:
//
//   G gref            0...15
//   D domid           1, 2, 3, 4               explicit: 1 + (v - 1) % 32767 (0 gives 1)
//   V vbd             0, 1, 2, 3               explicit: v % 65536
//   M max-persistent  default, 1...8, 0, 11, 12, 16, 22, 33, 352   explicit: min(v, Int.max)
//   S sectors         2097152, 16, 8, 64, 1, 0, 24, 4096   explicit: min(v, 4194304)
//   I request id      0...15
//   K sector          0, 8, 1, 16, 7, 64, 2097144, 2097151
//   N discard length  8, 1, 0, 16, 64, 7, 2, 4096   explicit: min(v, 65535)
//   C range length    16, 32, 64, 352          explicit: min(max(v, 1), 8192)
//   T fail times      1, 2, 3, 4               explicit: min(max(v, 1), 1000)
//   H fail nth        1...8                    explicit: min(max(v, 1), 1000000)
//   X descriptors     12, 1, 11, 2, 16, 24, 0, 256   explicit: min(v, 4096)
//   O write offset    4, 5, 0, 12, 13, 8, 20, 21     explicit: v % 4096
//   R after-reads     none, 1, 2, 3                explicit: min(max(v, 1), 1000)
//   MS tick           100, 1, 99, 101, 1000, 60000, 61000, 10   explicit: min(v, 2^40)
//   max_persistent_grants 1056, 0, 1, 2, 8, 11, 16, 352   explicit: min(v, 2^31 - 1)
//   max_buffer_pages  1024, 0, 1, 10           explicit: min(v, 2^31 - 1)
//   feature_persistent 0, 1                    explicit: v & 1
//   persistent_grant_unused_seconds 60, 0, 1, 2   explicit: min(v, 2^32 - 1)
//
// connect flags: bits 0-1 protocol (native, x86_32, x86_64, native);
//   bits 2-3 persistent= (1, 0, absent, 1); bit 4 backend-persistent=0;
//   bit 5 flush=0; bit 6 discard=1; bit 7 unused. A connect of a vbd that is
//   connected already is dropped.
// grant/revoke shape: bits 0-2 range length 1, 1, 1, 1, 2, 4, 8, 16; bit 3 ro
//   (grant only); bit 4 a domid pick follows (else: the latest connect's
//   domain, 1 before any); bit 5 a count pick follows and sets the length.
//   A range ends at 0xFFFFFFFF at most; the grefs of all grant and revoke
//   ranges of one input are capped at `maxRangePages` (later ranges shrink,
//   then drop).
// request body: flags, [op byte], [nr byte], [handle u16], id pick(I),
//   sector pick(K), then for a discard a length pick(N), else a count byte
//   (count = byte % 12) and per segment a gref pick(G) and a sectors byte.
//   flags: bits 0-2 op (read, write, read, write, barrier, flush, discard, an
//   op byte follows); bit 3 hold; bit 4 an nr byte follows (nr_segments,
//   possibly a lie); bits 5-6 vbd index; bit 7 a u16 handle follows.
//   sectors byte s < 0xC0: first = s & 7, last = min(7, first + (s >> 3 & 7));
//   s >= 0xC0: two bytes follow, first and last as they are.
//   The vbd index picks among the connected vbds in increasing order
//   (index % count); with none connected, or 32 requests held on that vbd
//   (a full ring), the request is dropped.
// Requests come out in canonical form (`RequestEvent.canonical`), and a raw
//   request whose bytes are exactly a request event's encoding comes out as
//   that request, as the text printer would print it.
// raw flags: bits 0-1 mode (0: explicit bytes; 1, 2, 3: request body and
//   patches); bit 2 hold; bits 3-4 vbd index. Mode 0 reads 112 bytes and keeps
//   the protocol's request size of them. Mode 1 encodes the body (whose own
//   hold and vbd bits are ignored) in the vbd's protocol, then reads a patch
//   count byte (count & 7) and that many (offset % size, value) byte pairs
//   written over the encoding.
// complete: picks among the vbds holding requests (index % count), then one
//   of its held ids (index % held); dropped when nothing is held.
// disconnect: picks among the connected vbds; dropped when none is.
// connect again (added within format 1, on reserved opcodes): the frontend
//   announces Connected again on a live vbd. Picks among the connected vbds
//   (index % count) and repeats that vbd's domain and protocol; flags bits
//   2-3 give persistent= as for connect; the rest are the defaults (the
//   backend must ignore them all). Dropped when none is connected.
// fail kind (byte & 3): 0 map gref: pick(G), pick(T), status byte;
//   1 map nth: pick(H), status byte; 2 alloc nth: pick(H); 3 hypercall nth:
//   pick(H). Status byte: GNTST -1 - (byte % 13).
// indirect (version 3): flags as a request body's: bits 0-2 the inner op
//   (read, write, read, write, barrier, flush, discard, an op byte follows),
//   bit 3 hold, bit 4 a u16 nr_segments follows (a lie when it differs),
//   bits 5-6 vbd index, bit 7 a u16 handle follows. Descriptors as request
//   segments; the pages are as many as the descriptors fill (at least one).
//   Dropped as a request is.
// write (version 3): length = 1 + byte % 8, capped at the page's end; the
//   guest writes into its page behind gref G of the latest connect's domain
//   (1 before any), at once or armed with after-reads (a page not granted
//   takes nothing, at run time).
// param (version 3): byte % 4 picks max_persistent_grants, max_buffer_pages,
//   feature_persistent, persistent_grant_unused_seconds.
// frontend-key byte: bit 0 the key (feature-persistent,
//   feature-persistent-grants); bits 1-3 the value
//   (1, 0, 2, 01, 0x1, yes, -1, 4294967297).

/// The constants and pools of the fuzz input format.
public enum FuzzFormat {
    /// The version the fuzz targets and the encoder use.
    public static let version = 4
    /// Every version the decoder still reads.
    public static let versions = 1...4
    public static let maxEvents = 256
    public static let maxInput = 65536
    /// Grefs granted or revoked over one input, at most (keeps runs fast).
    public static let maxRangePages = 8192
    /// A raw choice in mode 0 reads this many bytes whatever the protocol.
    public static let rawExplicitSize = 112

    public enum Opcode {
        public static let request: ClosedRange<UInt8> = 0x00...0x3F
        public static let grant: ClosedRange<UInt8> = 0x40...0x4F
        public static let complete: ClosedRange<UInt8> = 0x50...0x5B
        public static let connect: ClosedRange<UInt8> = 0x5C...0x67
        public static let disconnect: ClosedRange<UInt8> = 0x68...0x6F
        public static let fail: ClosedRange<UInt8> = 0x70...0x7F
        public static let revoke: ClosedRange<UInt8> = 0x80...0x83
        public static let raw: ClosedRange<UInt8> = 0x84...0x8B
        public static let frontendKey: ClosedRange<UInt8> = 0x8C...0x8F
        /// Version 2 on; a no-op in version 1.
        public static let connectAgain: ClosedRange<UInt8> = 0x90...0x93
        /// Version 3 on; no-ops before.
        public static let indirect: ClosedRange<UInt8> = 0x94...0x9F
        public static let write: ClosedRange<UInt8> = 0xA0...0xA3
        public static let tick: ClosedRange<UInt8> = 0xA4...0xA7
        public static let parameter: ClosedRange<UInt8> = 0xA8...0xAB
        /// Version 4 on.
        public static let connectHotplugAfter: ClosedRange<UInt8> = 0xAC...0xAD
        /// No-ops today; the next choices take values from here.
        public static let reserved: ClosedRange<UInt8> = 0xAE...0xFF
    }

    enum Pool {
        static let gref: [UInt64] = Array(0...15)
        static let domid: [UInt64] = [1, 2, 3, 4]
        static let vbd: [UInt64] = [0, 1, 2, 3]
        /// nil: the protocol's default limit.
        static let maxPersistent: [UInt64?] = [nil, 1, 2, 3, 4, 5, 6, 7, 8, 0, 11, 12, 16, 22, 33, 352]
        static let sectors: [UInt64] = [2_097_152, 16, 8, 64, 1, 0, 24, 4096]
        static let id: [UInt64] = Array(0...15)
        static let sector: [UInt64] = [0, 8, 1, 16, 7, 64, 2_097_144, 2_097_151]
        static let discardLength: [UInt64] = [8, 1, 0, 16, 64, 7, 2, 4096]
        static let rangeLength: [UInt64] = [16, 32, 64, 352]
        static let times: [UInt64] = [1, 2, 3, 4]
        static let nth: [UInt64] = Array(1...8)
        /// Range lengths by the shape byte's low three bits.
        static let shapeLength: [UInt32] = [1, 1, 1, 1, 2, 4, 8, 16]
        static let protocols: [BlkifProtocol] = [.native, .x86_32, .x86_64, .native]
        static let persistent: [Bool?] = [true, false, nil, true]
        static let operations: [UInt8] = [0, 1, 0, 1, 2, 3, 5]
        static let keyNames = ["feature-persistent", "feature-persistent-grants"]
        static let keyValues = ["1", "0", "2", "01", "0x1", "yes", "-1", "4294967297"]
        static let descriptors: [UInt64] = [12, 1, 11, 2, 16, 24, 0, 256]
        static let writeOffset: [UInt64] = [4, 5, 0, 12, 13, 8, 20, 21]
        /// nil: the write lands at once.
        static let afterReads: [UInt64?] = [nil, 1, 2, 3]
        static let tick: [UInt64] = [100, 1, 99, 101, 1000, 60000, 61000, 10]
        /// Per parameter, in `ModuleParameter.allCases` order.
        static let parameters: [(parameter: ModuleParameter, pool: [UInt64])] = [
            (.maxPersistentGrants, [1056, 0, 1, 2, 8, 11, 16, 352]),
            (.maxBufferPages, [1024, 0, 1, 10]),
            (.featurePersistent, [0, 1]),
            (.persistentGrantUnusedSeconds, [60, 0, 1, 2]),
        ]
    }

    enum Limit {
        static let domid: UInt64 = 32767
        static let discardLength: UInt64 = 65535
        /// Disks stay at most 2 GiB: a discard costs the model time per sector.
        static let sectors: UInt64 = 4_194_304
        static let rangeLength: UInt64 = UInt64(maxRangePages)
        static let times: UInt64 = 1000
        static let nth: UInt64 = 1_000_000
        static let descriptors = UInt64(IndirectRequestEvent.maxSegments)
        static let afterReads: UInt64 = 1000
    }

    /// First byte of an explicit pick: 1, 2, 4 or 8 value bytes follow.
    static let explicitPick: UInt8 = 0xFC
    static let explicitWidths = [1, 2, 4, 8]
    /// Sectors byte values from here on are followed by explicit first and last.
    static let explicitSectors: UInt8 = 0xC0
    static let segmentCountModulus = 12
}

/// Reads fuzz bytes; past the end it reads zeros.
struct FuzzReader {
    private let bytes: [UInt8]
    private(set) var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { offset >= bytes.count }

    mutating func byte() -> UInt8 {
        defer { offset += 1 }
        return offset < bytes.count ? bytes[offset] : 0
    }

    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in byte() } }

    mutating func u16() -> UInt16 { UInt16(byte()) | UInt16(byte()) << 8 }

    mutating func littleEndian(width: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<width { value |= UInt64(byte()) << (8 * UInt64(index)) }
        return value
    }

    /// A pick: an explicit value, or an index into a pool of `poolCount` values.
    enum Pick: Equatable {
        case pool(Int)
        case explicit(UInt64)
    }

    mutating func pick(poolCount: Int) -> Pick {
        let selector = byte()
        if selector >= FuzzFormat.explicitPick {
            return .explicit(littleEndian(width: FuzzFormat.explicitWidths[Int(selector - FuzzFormat.explicitPick)]))
        }
        return .pool(Int(selector) % poolCount)
    }

    mutating func pick(_ pool: [UInt64], explicit transform: (UInt64) -> UInt64 = { $0 }) -> UInt64 {
        switch pick(poolCount: pool.count) {
        case .pool(let index): pool[index]
        case .explicit(let value): transform(value)
        }
    }
}

/// What the decoder and the encoder both know about the run so far: the
/// trace's own state (connected vbds, held requests, the latest domain),
/// which decides which events are valid, and the grant budget.
struct FuzzState {
    var trace = TraceState()
    /// Grefs named by grant and revoke ranges so far.
    var rangePages = 0

    var connectedVbds: [UInt16] { trace.connectedVbds }
    var holdingVbds: [UInt16] { trace.holdingVbds }
    var defaultDomid: UInt16 { trace.latestDomid ?? 1 }
    func canSubmit(vbd: UInt16) -> Bool { trace.canSubmit(vbd: vbd) }

    /// Applies an event the way the trace runner will.
    mutating func apply(_ kind: TraceEventKind) {
        trace.apply(kind)
        switch kind {
        case .grant(let grant): rangePages += grant.grefs.count
        case .revoke(let revoke): rangePages += revoke.grefs.count
        default: break
        }
    }
}

/// Turns any byte string into a valid trace (the format above).
public enum FuzzDecoder {
    /// The events the bytes stand for under format `version` (one of `FuzzFormat.versions`).
    public static func decode(_ input: some Sequence<UInt8>, version: Int = FuzzFormat.version) -> [TraceEventKind] {
        precondition(FuzzFormat.versions.contains(version), "fuzz input format \(version) is not one this decoder reads")
        // libFuzzer's bytes and the corpus arrive contiguous: copy them in one
        // go; element by element through a generic sequence cost a tenth of an execution.
        let bytes = input.withContiguousStorageIfAvailable { Array($0.prefix(FuzzFormat.maxInput)) }
            ?? Array(input.prefix(FuzzFormat.maxInput))
        var reader = FuzzReader(bytes)
        var state = FuzzState()
        var events: [TraceEventKind] = []
        while !reader.atEnd && events.count < FuzzFormat.maxEvents {
            guard let event = decodeChoice(&reader, state: state, version: version) else { continue }
            state.apply(event)
            events.append(event)
        }
        return events
    }

    /// The decoded events as a text trace.
    public static func text(_ input: some Sequence<UInt8>, version: Int = FuzzFormat.version) -> String {
        TextTracePrinter.render(decode(input, version: version))
    }

    /// One choice; nil when it is a no-op or dropped in this state.
    static func decodeChoice(_ reader: inout FuzzReader, state: FuzzState,
                             version: Int = FuzzFormat.version) -> TraceEventKind? {
        let opcode = reader.byte()
        switch opcode {
        case FuzzFormat.Opcode.request: return request(&reader, state: state)
        case FuzzFormat.Opcode.grant: return grant(&reader, state: state)
        case FuzzFormat.Opcode.complete: return complete(&reader, state: state)
        case FuzzFormat.Opcode.connect: return connect(&reader, state: state)
        case FuzzFormat.Opcode.connectHotplugAfter where version >= 4:
            return connect(&reader, state: state, hotplugAfterConnect: true)
        case FuzzFormat.Opcode.disconnect: return disconnect(&reader, state: state)
        case FuzzFormat.Opcode.fail: return fail(&reader)
        case FuzzFormat.Opcode.revoke: return revoke(&reader, state: state)
        case FuzzFormat.Opcode.raw: return raw(&reader, state: state)
        case FuzzFormat.Opcode.frontendKey: return frontendKey(&reader)
        case FuzzFormat.Opcode.connectAgain where version >= 2: return connectAgain(&reader, state: state)
        case FuzzFormat.Opcode.indirect where version >= 3: return indirect(&reader, state: state)
        case FuzzFormat.Opcode.write where version >= 3: return write(&reader, state: state)
        case FuzzFormat.Opcode.tick where version >= 3: return tick(&reader)
        case FuzzFormat.Opcode.parameter where version >= 3: return parameter(&reader)
        default: return nil
        }
    }

    // MARK: picks

    static func domid(_ reader: inout FuzzReader) -> UInt16 {
        UInt16(reader.pick(FuzzFormat.Pool.domid) { $0 == 0 ? 1 : 1 + ($0 - 1) % FuzzFormat.Limit.domid })
    }

    static func gref(_ reader: inout FuzzReader) -> UInt32 {
        UInt32(truncatingIfNeeded: reader.pick(FuzzFormat.Pool.gref))
    }

    // MARK: choices

    static func connect(_ reader: inout FuzzReader, state: FuzzState, hotplugAfterConnect: Bool = false)
        -> TraceEventKind? {
        let flags = reader.byte()
        let vbd = UInt16(truncatingIfNeeded: reader.pick(FuzzFormat.Pool.vbd))
        let domid = domid(&reader)
        let limit: Int?
        switch reader.pick(poolCount: FuzzFormat.Pool.maxPersistent.count) {
        case .pool(let index): limit = FuzzFormat.Pool.maxPersistent[index].map(Int.init)
        case .explicit(let value): limit = Int(min(value, UInt64(Int.max)))
        }
        let sectors = reader.pick(FuzzFormat.Pool.sectors) { min($0, FuzzFormat.Limit.sectors) }
        guard state.trace.connected[vbd] == nil else { return nil }
        return .connect(ConnectEvent(
            domid: domid, protocolName: FuzzFormat.Pool.protocols[Int(flags & 3)],
            persistent: FuzzFormat.Pool.persistent[Int(flags >> 2 & 3)],
            backendPersistent: flags & 0x10 == 0, maxPersistent: limit, sectors: sectors,
            flush: flags & 0x20 == 0, discard: flags & 0x40 != 0, vbd: vbd,
            hotplugAfterConnect: hotplugAfterConnect))
    }

    /// The shared shape of `grant` and `revoke`: a range and a domain.
    static func range(_ reader: inout FuzzReader, state: FuzzState)
        -> (grefs: ClosedRange<UInt32>, readOnly: Bool, domid: UInt16) {
        let first = gref(&reader)
        let shape = reader.byte()
        let domid = shape & 0x10 != 0 ? domid(&reader) : state.defaultDomid
        var length = UInt64(FuzzFormat.Pool.shapeLength[Int(shape & 7)])
        if shape & 0x20 != 0 {
            length = reader.pick(FuzzFormat.Pool.rangeLength) { min(max($0, 1), FuzzFormat.Limit.rangeLength) }
        }
        let last = UInt32(min(UInt64(first) + length - 1, UInt64(UInt32.max)))
        return (first...last, shape & 0x08 != 0, domid)
    }

    /// The range shortened to what the input's budget of range grefs leaves; nil when nothing is left.
    static func budgeted(_ grefs: ClosedRange<UInt32>, state: FuzzState) -> ClosedRange<UInt32>? {
        let room = FuzzFormat.maxRangePages - state.rangePages
        guard room > 0 else { return nil }
        return grefs.count > room ? grefs.lowerBound...(grefs.lowerBound + UInt32(room - 1)) : grefs
    }

    static func grant(_ reader: inout FuzzReader, state: FuzzState) -> TraceEventKind? {
        let (grefs, readOnly, domid) = range(&reader, state: state)
        guard let kept = budgeted(grefs, state: state) else { return nil }
        return .grant(GrantEvent(grefs: kept, readOnly: readOnly, domid: domid))
    }

    static func revoke(_ reader: inout FuzzReader, state: FuzzState) -> TraceEventKind? {
        let (grefs, _, domid) = range(&reader, state: state)
        guard let kept = budgeted(grefs, state: state) else { return nil }
        return .revoke(RevokeEvent(grefs: kept, domid: domid))
    }

    static func status(_ reader: inout FuzzReader) -> GrantStatus {
        GrantStatus(rawValue: -1 - Int16(reader.byte() % 13))!
    }

    static func fail(_ reader: inout FuzzReader) -> TraceEventKind? {
        let kind = reader.byte() & 3
        let nth = { (reader: inout FuzzReader) in
            Int(reader.pick(FuzzFormat.Pool.nth) { min(max($0, 1), FuzzFormat.Limit.nth) })
        }
        switch kind {
        case 0:
            let gref = gref(&reader)
            let times = Int(reader.pick(FuzzFormat.Pool.times) { min(max($0, 1), FuzzFormat.Limit.times) })
            return .fail(.mapGref(gref: gref, times: times, status: status(&reader)))
        case 1:
            let nth = nth(&reader)
            return .fail(.mapNth(nth: nth, status: status(&reader)))
        case 2:
            return .fail(.allocNth(nth: nth(&reader)))
        default:
            return .fail(.hypercallNth(nth: nth(&reader)))
        }
    }

    /// The fields of a request as the bytes give them, before a vbd is chosen.
    struct RequestBody {
        var event: RequestEvent
        var vbdIndex: Int
    }

    /// The head that request and indirect choices share: the flags byte,
    /// then an operation byte, an `nr_segments` (a byte, or a u16 for an
    /// indirect request) and a u16 handle when the flags say so.
    struct RequestHead {
        var operation: UInt8
        var nrSegments: UInt16?
        var handle: UInt16
        var hold: Bool
        var vbdIndex: Int
    }

    static func requestHead(_ reader: inout FuzzReader, wideCount: Bool) -> RequestHead {
        let flags = reader.byte()
        let opIndex = Int(flags & 7)
        let operation = opIndex < FuzzFormat.Pool.operations.count ? FuzzFormat.Pool.operations[opIndex] : reader.byte()
        let count: UInt16? = flags & 0x10 == 0 ? nil : wideCount ? reader.u16() : UInt16(reader.byte())
        let handle: UInt16 = flags & 0x80 != 0 ? reader.u16() : 0
        return RequestHead(operation: operation, nrSegments: count, handle: handle, hold: flags & 0x08 != 0,
                           vbdIndex: Int(flags >> 5 & 3))
    }

    static func requestBody(_ reader: inout FuzzReader) -> RequestBody {
        let head = requestHead(&reader, wideCount: false)
        let operation = head.operation
        let lie = head.nrSegments.map { UInt8(truncatingIfNeeded: $0) }
        let id = reader.pick(FuzzFormat.Pool.id)
        let sector = reader.pick(FuzzFormat.Pool.sector)
        var event = RequestEvent(id: id, operation: operation, sector: sector, handle: head.handle, hold: head.hold)
        if operation == BlkifOperation.discard.rawValue {
            event.nrSectors = reader.pick(FuzzFormat.Pool.discardLength) { min($0, FuzzFormat.Limit.discardLength) }
        } else {
            let count = Int(reader.byte()) % FuzzFormat.segmentCountModulus
            for _ in 0..<count { event.segments.append(segment(&reader)) }
        }
        // The default nr_segments is the number carried (0 for a discard): canonical as nil.
        if let lie, lie != UInt8(event.segments.count) { event.nrSegments = lie }
        return RequestBody(event: event, vbdIndex: head.vbdIndex)
    }

    /// A segment (or descriptor): a gref pick and a sectors byte.
    static func segment(_ reader: inout FuzzReader) -> BlkifSegment {
        let gref = gref(&reader)
        let sectors = reader.byte()
        if sectors >= FuzzFormat.explicitSectors {
            let first = reader.byte()
            return BlkifSegment(gref: gref, firstSect: first, lastSect: reader.byte())
        }
        let first = sectors & 7
        return BlkifSegment(gref: gref, firstSect: first, lastSect: min(7, first + (sectors >> 3 & 7)))
    }

    static func indirect(_ reader: inout FuzzReader, state: FuzzState) -> TraceEventKind? {
        let head = requestHead(&reader, wideCount: true)
        let id = reader.pick(FuzzFormat.Pool.id)
        let sector = reader.pick(FuzzFormat.Pool.sector)
        let count = Int(reader.pick(FuzzFormat.Pool.descriptors) { min($0, FuzzFormat.Limit.descriptors) })
        let segments = (0..<count).map { _ in segment(&reader) }
        let pages = (0..<max(1, Blkif.indirectPages(forSegments: count))).map { _ in gref(&reader) }
        let vbds = state.connectedVbds
        guard !vbds.isEmpty else { return nil }
        let vbd = vbds[head.vbdIndex % vbds.count]
        guard state.canSubmit(vbd: vbd) else { return nil }
        let event = IndirectRequestEvent(id: id, operation: head.operation, sector: sector, segments: segments,
                                         nrSegments: head.nrSegments, pages: pages, handle: head.handle, vbd: vbd,
                                         hold: head.hold)
        return .indirect(event.canonical)
    }

    static func write(_ reader: inout FuzzReader, state: FuzzState) -> TraceEventKind? {
        let gref = gref(&reader)
        let offset = Int(reader.pick(FuzzFormat.Pool.writeOffset) { $0 % UInt64(Blkif.pageSize) })
        let length = min(1 + Int(reader.byte() % 8), Blkif.pageSize - offset)
        let bytes = reader.bytes(length)
        let afterReads: UInt64?
        switch reader.pick(poolCount: FuzzFormat.Pool.afterReads.count) {
        case .pool(let index): afterReads = FuzzFormat.Pool.afterReads[index]
        case .explicit(let value): afterReads = min(max(value, 1), FuzzFormat.Limit.afterReads)
        }
        return .write(GuestWriteEvent(gref: gref, domid: state.defaultDomid, offset: offset, bytes: bytes,
                                      afterReads: afterReads.map(Int.init)))
    }

    static func tick(_ reader: inout FuzzReader) -> TraceEventKind? {
        .tick(milliseconds: reader.pick(FuzzFormat.Pool.tick) { min($0, TraceEventKind.maxTickMilliseconds) })
    }

    static func parameter(_ reader: inout FuzzReader) -> TraceEventKind? {
        let (parameter, pool) = FuzzFormat.Pool.parameters[Int(reader.byte() % 4)]
        let value = reader.pick(pool) { parameter == .featurePersistent ? $0 & 1 : min($0, parameter.maximum) }
        return .parameter(parameter, value: value)
    }

    static func request(_ reader: inout FuzzReader, state: FuzzState) -> TraceEventKind? {
        var body = requestBody(&reader)
        let vbds = state.connectedVbds
        guard !vbds.isEmpty else { return nil }
        let vbd = vbds[body.vbdIndex % vbds.count]
        guard state.canSubmit(vbd: vbd) else { return nil }
        body.event.vbd = vbd
        return .request(body.event.canonical)
    }

    static func raw(_ reader: inout FuzzReader, state: FuzzState) -> TraceEventKind? {
        let flags = reader.byte()
        let mode = flags & 3
        let hold = flags & 0x04 != 0
        let vbdIndex = Int(flags >> 3 & 3)
        var explicit: [UInt8] = []
        var body: RequestBody?
        var patches: [(offset: UInt8, value: UInt8)] = []
        if mode == 0 {
            explicit = reader.bytes(FuzzFormat.rawExplicitSize)
        } else {
            body = requestBody(&reader)
            let count = Int(reader.byte() & 7)
            for _ in 0..<count { patches.append((reader.byte(), reader.byte())) }
        }
        let vbds = state.connectedVbds
        guard !vbds.isEmpty else { return nil }
        let vbd = vbds[vbdIndex % vbds.count]
        guard state.canSubmit(vbd: vbd), let ringProtocol = state.trace.connected[vbd]?.ringProtocol else { return nil }
        let size = ringProtocol.request.size
        var bytes: [UInt8]
        if let body {
            bytes = ringProtocol.encode(body.event.blkifRequest)
            for patch in patches { bytes[Int(patch.offset) % size] = patch.value }
        } else {
            bytes = Array(explicit.prefix(size))
        }
        return TraceEventKind.raw(RawRequestEvent(bytes: bytes, vbd: vbd, hold: hold)).canonical(after: state.trace)
    }

    static func complete(_ reader: inout FuzzReader, state: FuzzState) -> TraceEventKind? {
        let vbdIndex = Int(reader.byte())
        let heldIndex = Int(reader.byte())
        let vbds = state.holdingVbds
        guard !vbds.isEmpty else { return nil }
        let vbd = vbds[vbdIndex % vbds.count]
        let held = state.trace.connected[vbd]!.held
        return .complete(id: held[heldIndex % held.count], vbd: vbd)
    }

    static func disconnect(_ reader: inout FuzzReader, state: FuzzState) -> TraceEventKind? {
        let index = Int(reader.byte())
        let vbds = state.connectedVbds
        guard !vbds.isEmpty else { return nil }
        return .disconnect(vbd: vbds[index % vbds.count])
    }

    static func connectAgain(_ reader: inout FuzzReader, state: FuzzState) -> TraceEventKind? {
        let index = Int(reader.byte())
        let flags = reader.byte()
        let vbds = state.connectedVbds
        guard !vbds.isEmpty else { return nil }
        let vbd = vbds[index % vbds.count]
        guard let live = state.trace.connected[vbd] else { return nil }
        return .connect(ConnectEvent(domid: live.domid, protocolName: live.ringProtocol,
                                     persistent: FuzzFormat.Pool.persistent[Int(flags >> 2 & 3)], vbd: vbd))
    }

    static func frontendKey(_ reader: inout FuzzReader) -> TraceEventKind? {
        let byte = reader.byte()
        return .frontendKey(name: FuzzFormat.Pool.keyNames[Int(byte & 1)],
                            value: FuzzFormat.Pool.keyValues[Int(byte >> 1 & 7)])
    }
}
