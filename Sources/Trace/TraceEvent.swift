import Blkif

/// `connect`: the backend connects to the frontend of one vbd.
public struct ConnectEvent: Hashable, Sendable {
    public var domid: UInt16
    public var protocolName: BlkifProtocol
    /// `persistent=`: when set, the harness writes the frontend key
    /// `feature-persistent` with this value before connecting; nil leaves the
    /// frontend's keys as they are.
    public var persistent: Bool?
    /// Whether the backend offers persistent grants.
    public var backendPersistent: Bool
    /// nil: the protocol's own limit (ring size × 11).
    public var maxPersistent: Int?
    /// Disk size in 512-byte sectors.
    public var sectors: UInt64
    public var flush: Bool
    public var discard: Bool
    public var vbd: UInt16
    /// `hotplug=after` (format version 2): the hotplug script writes
    /// `physical-device` only after the frontend has connected, so the vbd is
    /// created after `connect_ring` negotiated (the order G2018's 2022 fix
    /// fc9be616bb8f is about). Matters only for a vbd's first connect.
    public var hotplugAfterConnect: Bool

    public init(domid: UInt16, protocolName: BlkifProtocol = .native, persistent: Bool? = nil,
                backendPersistent: Bool = true, maxPersistent: Int? = nil, sectors: UInt64 = 2_097_152,
                flush: Bool = true, discard: Bool = false, vbd: UInt16 = 0, hotplugAfterConnect: Bool = false) {
        self.domid = domid
        self.protocolName = protocolName
        self.persistent = persistent
        self.backendPersistent = backendPersistent
        self.maxPersistent = maxPersistent
        self.sectors = sectors
        self.flush = flush
        self.discard = discard
        self.vbd = vbd
        self.hotplugAfterConnect = hotplugAfterConnect
    }
}

/// `grant`: the guest grants one page per gref of the range to the backend.
public struct GrantEvent: Hashable, Sendable {
    public var grefs: ClosedRange<UInt32>
    public var readOnly: Bool
    /// Always resolved: the reader fills in the latest connect's domain.
    public var domid: UInt16

    public init(grefs: ClosedRange<UInt32>, readOnly: Bool = false, domid: UInt16) {
        self.grefs = grefs
        self.readOnly = readOnly
        self.domid = domid
    }
}

/// `revoke`: the guest tries to end foreign access to the grefs of the range.
public struct RevokeEvent: Hashable, Sendable {
    public var grefs: ClosedRange<UInt32>
    public var domid: UInt16

    public init(grefs: ClosedRange<UInt32>, domid: UInt16) {
        self.grefs = grefs
        self.domid = domid
    }
}

/// `fail`: a fault to inject. Counts start at 1, meaning "the next one".
public enum FaultEvent: Hashable, Sendable {
    /// The next `times` map operations of `gref` fail with `status`.
    case mapGref(gref: UInt32, times: Int, status: GrantStatus)
    /// The `nth` map operation from now fails with `status`.
    case mapNth(nth: Int, status: GrantStatus)
    /// The `nth` kernel allocation from now fails with ENOMEM.
    case allocNth(nth: Int)
    /// The `nth` grant-table hypercall from now fails as a whole.
    case hypercallNth(nth: Int)
}

/// `request`: one ring request written field by field. Fields may lie
/// (`nrSegments`, last_sect > 7, unknown opcodes): judging them is the backend's job.
public struct RequestEvent: Hashable, Sendable {
    public var id: UInt64
    public var operation: UInt8
    public var sector: UInt64
    /// The segment slots carried, in order (at most 11).
    public var segments: [BlkifSegment]
    /// The `nr_segments` byte; nil means the number of `segments`.
    public var nrSegments: UInt8?
    /// `nr_sectors` of a discard; the reader refuses it on other operations.
    public var nrSectors: UInt64?
    public var handle: UInt16
    public var vbd: UInt16
    /// The I/O stays in flight until a `complete` with this id.
    public var hold: Bool

    public init(id: UInt64, operation: UInt8, sector: UInt64, segments: [BlkifSegment] = [],
                nrSegments: UInt8? = nil, nrSectors: UInt64? = nil, handle: UInt16 = 0,
                vbd: UInt16 = 0, hold: Bool = false) {
        self.id = id
        self.operation = operation
        self.sector = sector
        self.segments = segments
        self.nrSegments = nrSegments
        self.nrSectors = nrSectors
        self.handle = handle
        self.vbd = vbd
        self.hold = hold
    }

    /// The ring request this event stands for.
    public var blkifRequest: BlkifRequest {
        BlkifRequest(operation: operation, nrSegments: nrSegments, handle: handle, id: id,
                     sectorNumber: sector, segments: segments, discardSectors: nrSectors ?? 0)
    }
}

/// `raw`: a ring request given as the bytes of a ring slot, as recorded.
public struct RawRequestEvent: Hashable, Sendable {
    public var bytes: [UInt8]
    public var vbd: UInt16
    public var hold: Bool

    public init(bytes: [UInt8], vbd: UInt16 = 0, hold: Bool = false) {
        self.bytes = bytes
        self.vbd = vbd
        self.hold = hold
    }
}

/// `indirect` (format version 2): one `BLKIF_OP_INDIRECT` request. The
/// guest first writes the segment descriptors into the pages named by
/// `pages` (descriptor `i` at byte `(i % 512) * 8` of page `i / 512`), then
/// places the request on the ring. Fields may lie: `nrSegments` may differ
/// from the descriptors written, `operation` may be any inner opcode.
public struct IndirectRequestEvent: Hashable, Sendable {
    public var id: UInt64
    /// `indirect_op`: the operation the segments carry out.
    public var operation: UInt8
    public var sector: UInt64
    /// The descriptors the guest writes, in order (at most 8 × 512).
    public var segments: [BlkifSegment]
    /// The u16 `nr_segments`; nil means the number of `segments`.
    public var nrSegments: UInt16?
    /// `indirect_grefs`: the grefs of the descriptor pages (at most 8; the
    /// ring carries zero for the rest).
    public var pages: [UInt32]
    public var handle: UInt16
    public var vbd: UInt16
    public var hold: Bool

    public init(id: UInt64, operation: UInt8, sector: UInt64, segments: [BlkifSegment] = [],
                nrSegments: UInt16? = nil, pages: [UInt32], handle: UInt16 = 0, vbd: UInt16 = 0,
                hold: Bool = false) {
        self.id = id
        self.operation = operation
        self.sector = sector
        self.segments = segments
        self.nrSegments = nrSegments
        self.pages = pages
        self.handle = handle
        self.vbd = vbd
        self.hold = hold
    }

    /// The most descriptors an event carries: eight pages of 512.
    public static let maxSegments = Blkif.maxIndirectPagesPerRequest * Blkif.segmentsPerIndirectPage

    /// The ring request this event places.
    public var blkifRequest: BlkifIndirectRequest {
        BlkifIndirectRequest(indirectOperation: operation,
                             nrSegments: nrSegments ?? UInt16(truncatingIfNeeded: segments.count),
                             handle: handle, id: id, sectorNumber: sector, indirectGrefs: pages)
    }
}

/// `write` (format version 2): the guest writes bytes into the page behind
/// one of its grants. With `afterReads` the write is armed instead: it lands
/// right after the backend's `afterReads`-th read of any byte it covers,
/// counted from this event — a race between two reads, made deterministic.
public struct GuestWriteEvent: Hashable, Sendable {
    public var gref: UInt32
    /// Always resolved: the reader fills in the latest connect's domain.
    public var domid: UInt16
    /// Byte offset in the page; `offset + bytes.count` is at most 4096.
    public var offset: Int
    public var bytes: [UInt8]
    public var afterReads: Int?

    public init(gref: UInt32, domid: UInt16, offset: Int, bytes: [UInt8], afterReads: Int? = nil) {
        self.gref = gref
        self.domid = domid
        self.offset = offset
        self.bytes = bytes
        self.afterReads = afterReads
    }
}

/// `param` (format version 2): a blkback module parameter, as written to
/// `/sys/module/xen_blkback/parameters/NAME`. Each backend generation reads
/// the ones it has, when its code reads them; the others are ignored, as a
/// kernel without the parameter would never see it.
public enum ModuleParameter: String, CaseIterable, Hashable, Sendable {
    /// `max_persistent_grants` (G2013, G2018; default 1056).
    case maxPersistentGrants = "max_persistent_grants"
    /// `max_buffer_pages` (G2013, G2018; default 1024): the free-page pool kept.
    case maxBufferPages = "max_buffer_pages"
    /// `feature_persistent` (G2018 from Linux 5.10; default 1).
    case featurePersistent = "feature_persistent"
    /// `persistent_grant_unused_seconds` (G2018; default 60; 0 never times out).
    case persistentGrantUnusedSeconds = "persistent_grant_unused_seconds"

    /// The largest value the parameter takes (`int`, `uint` or `bool`).
    public var maximum: UInt64 {
        switch self {
        case .maxPersistentGrants, .maxBufferPages: UInt64(Int32.max)
        case .featurePersistent: 1
        case .persistentGrantUnusedSeconds: UInt64(UInt32.max)
        }
    }
}

/// `expect`: what the recording says the backend does.
public enum Expectation: Hashable, Sendable {
    case response(id: UInt64, status: BlkifResponseStatus)
    /// The number of persistent grants the backend holds now.
    case persistent(count: Int)
    /// The trace is meant to expose `CheckID`, under every backend or only the one named.
    case violation(CheckID, backend: String?)
}

public enum TraceEventKind: Hashable, Sendable {
    case frontendKey(name: String, value: String)
    case connect(ConnectEvent)
    case grant(GrantEvent)
    case revoke(RevokeEvent)
    case fail(FaultEvent)
    case request(RequestEvent)
    case raw(RawRequestEvent)
    case complete(id: UInt64, vbd: UInt16)
    /// Text writes the vbd as `vbd=` on `expect response` and `expect
    /// persistent` (an extension of format version 1; default 0); a violation
    /// is read with vbd 0. The pcap codec takes it from the packet header.
    case expect(Expectation, vbd: UInt16)
    case disconnect(vbd: UInt16)
    /// Format version 2: an indirect request, its descriptors written first.
    case indirect(IndirectRequestEvent)
    /// Format version 2: the guest writes (or arms a write of) bytes.
    case write(GuestWriteEvent)
    /// Format version 2: this many milliseconds pass (the backend's timers run).
    case tick(milliseconds: UInt64)
    /// Format version 2: a module parameter is set.
    case parameter(ModuleParameter, value: UInt64)
    /// Format version 2: the generations whose backends the trace's
    /// expectations describe (names from `TraceFormat.generationNames`).
    case generations([String])
}

extension TraceEventKind {
    /// The longest `tick`: 2^40 ms, some 35 years, so that a clock summing
    /// ticks in milliseconds cannot overflow in any trace a reader accepts.
    public static let maxTickMilliseconds: UInt64 = 1 << 40

    /// The first format version that has this event.
    public var formatVersion: Int {
        switch self {
        case .indirect, .write, .tick, .parameter, .generations: 2
        case .connect(let connect): connect.hotplugAfterConnect ? 2 : 1
        case .frontendKey, .grant, .revoke, .fail, .request, .raw, .complete, .expect, .disconnect: 1
        }
    }
}

/// The versions of the trace format (docs/trace-format.md §10).
public enum TraceFormat {
    /// Every version this implementation reads; it writes each trace in the
    /// version it was read in, or the lowest that carries its events.
    public static let versions: ClosedRange<Int> = 1...2

    /// The backend generations a `generations` line may name, in canonical
    /// order (the harness's `Generation` cases, by name).
    public static let generationNames = ["g2012", "g2013", "g2018"]

    /// Whose backends a trace's `expect` lines describe when it says nothing:
    /// a version-1 trace was written for G2012 (the only design there was);
    /// a later one for every generation.
    public static func defaultGenerations(version: Int) -> [String] {
        version == 1 ? ["g2012"] : generationNames
    }

    /// The header line of a trace of `version`.
    public static func header(version: Int) -> String { "xenblk-trace \(version)" }

    /// The lowest version that carries every one of `events`: a trace of
    /// version-1 events stays a version-1 trace.
    public static func version(carrying events: some Sequence<TraceEventKind>) -> Int {
        events.reduce(versions.lowerBound) { max($0, $1.formatVersion) }
    }
}

/// One event and where it came from, for error and violation reports.
public struct TraceEvent: Hashable, Sendable {
    public var kind: TraceEventKind
    public var position: TracePosition

    public init(kind: TraceEventKind, position: TracePosition) {
        self.kind = kind
        self.position = position
    }
}
