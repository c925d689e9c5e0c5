/// Numbers fixed by Xen's public headers (io/blkif.h, io/ring.h, grant_table.h).
public enum Blkif {
    /// `BLKIF_MAX_SEGMENTS_PER_REQUEST`.
    public static let maxSegmentsPerRequest = 11
    /// A guest page, and the unit a grant covers.
    public static let pageSize = 4096
    public static let sectorSize = 512
    /// Sectors in one page: a segment's `last_sect` must stay below this.
    public static let sectorsPerPage = pageSize / sectorSize
    /// `struct blkif_sring` header: req_prod, req_event, rsp_prod, rsp_event and 48 bytes of padding.
    public static let sharedRingHeaderSize = 64

    /// `__CONST_RING_SIZE`: the largest power of two of entries that fits in
    /// one page after the shared ring header. An entry is the union of a
    /// request and a response, so its size is the larger of the two.
    public static func ringSize(entrySize: Int, pageSize: Int = Blkif.pageSize) -> Int {
        precondition(entrySize > 0, "a ring entry has a size")
        let fit = (pageSize - sharedRingHeaderSize) / entrySize
        guard fit > 0 else { return 0 }
        var power = 1
        while power * 2 <= fit { power *= 2 }
        return power
    }
}

/// `BLKIF_OP_*`.
public enum BlkifOperation: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case read = 0
    case write = 1
    case writeBarrier = 2
    case flushDiskcache = 3
    case reserved = 4
    case discard = 5
    case indirect = 6

    /// The word the trace format uses for this opcode, where it has one.
    public var traceName: String? {
        switch self {
        case .read: "read"
        case .write: "write"
        case .writeBarrier: "barrier"
        case .flushDiskcache: "flush"
        case .discard: "discard"
        case .reserved, .indirect: nil
        }
    }

    public init?(traceName: String) {
        guard let op = Self.allCases.first(where: { $0.traceName == traceName }) else { return nil }
        self = op
    }

    public var description: String { traceName ?? "op\(rawValue)" }

    /// Whether the operation's segments carry guest data to the disk: a
    /// write, and a barrier or a cache flush, which may carry data too.
    public var isWrite: Bool { self == .write || isFlushLike }

    /// Whether the operation asks for ordering or durability (a barrier or a
    /// cache flush), which the disk must support.
    public var isFlushLike: Bool { self == .writeBarrier || self == .flushDiskcache }
}

/// `BLKIF_RSP_*`.
public enum BlkifResponseStatus: Int16, CaseIterable, Sendable, CustomStringConvertible {
    case okay = 0
    case error = -1
    case eopnotsupp = -2

    public var traceName: String {
        switch self {
        case .okay: "okay"
        case .error: "error"
        case .eopnotsupp: "eopnotsupp"
        }
    }

    public init?(traceName: String) {
        guard let status = Self.allCases.first(where: { $0.traceName == traceName }) else { return nil }
        self = status
    }

    public var description: String { traceName }
}

/// `GNTST_*`: the status of one grant-table operation.
public enum GrantStatus: Int16, CaseIterable, Sendable, CustomStringConvertible {
    case okay = 0
    case generalError = -1
    case badDomain = -2
    case badGntref = -3
    case badHandle = -4
    case badVirtAddr = -5
    case badDevAddr = -6
    case noDeviceSpace = -7
    case permissionDenied = -8
    case badPage = -9
    case badCopyArg = -10
    case addressTooBig = -11
    case eagain = -12
    case noSpace = -13

    /// The name without the `GNTST_` prefix, as traces write it.
    public var traceName: String {
        switch self {
        case .okay: "okay"
        case .generalError: "general_error"
        case .badDomain: "bad_domain"
        case .badGntref: "bad_gntref"
        case .badHandle: "bad_handle"
        case .badVirtAddr: "bad_virt_addr"
        case .badDevAddr: "bad_dev_addr"
        case .noDeviceSpace: "no_device_space"
        case .permissionDenied: "permission_denied"
        case .badPage: "bad_page"
        case .badCopyArg: "bad_copy_arg"
        case .addressTooBig: "address_too_big"
        case .eagain: "eagain"
        case .noSpace: "no_space"
        }
    }

    public init?(traceName: String) {
        guard let status = Self.allCases.first(where: { $0.traceName == traceName }) else { return nil }
        self = status
    }

    public var description: String { traceName }
}

/// `GNTMAP_*` flags of a map operation.
public struct GrantMapFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let deviceMap = GrantMapFlags(rawValue: 1)
    public static let hostMap = GrantMapFlags(rawValue: 2)
    public static let readOnly = GrantMapFlags(rawValue: 4)

    public var description: String {
        var words: [String] = []
        if contains(.deviceMap) { words.append("device_map") }
        if contains(.hostMap) { words.append("host_map") }
        if contains(.readOnly) { words.append("readonly") }
        return words.isEmpty ? "0" : words.joined(separator: "|")
    }
}

/// Grant references and handles are plain numbers in the ABI.
public typealias GrantRef = UInt32
public typealias GrantHandle = UInt32
public typealias DomainID = UInt16
