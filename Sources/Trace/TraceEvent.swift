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

    public init(domid: UInt16, protocolName: BlkifProtocol = .native, persistent: Bool? = nil,
                backendPersistent: Bool = true, maxPersistent: Int? = nil, sectors: UInt64 = 2_097_152,
                flush: Bool = true, discard: Bool = false, vbd: UInt16 = 0) {
        self.domid = domid
        self.protocolName = protocolName
        self.persistent = persistent
        self.backendPersistent = backendPersistent
        self.maxPersistent = maxPersistent
        self.sectors = sectors
        self.flush = flush
        self.discard = discard
        self.vbd = vbd
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
