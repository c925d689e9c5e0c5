/// The three ring ABIs a frontend may speak (`protocol` in xenstore).
/// `native` is the backend's own ABI; on this model's x86_64 dom0 it has the
/// x86_64 layout.
public enum BlkifProtocol: String, CaseIterable, Sendable, CustomStringConvertible {
    case native
    case x86_32 = "x86_32"
    case x86_64 = "x86_64"

    public var description: String { rawValue }

    /// Field offsets of a request in one ABI. x86_32 packs the 64-bit id on a
    /// 4-byte boundary, which is why its offsets differ.
    public struct RequestLayout: Sendable, Equatable {
        public let size: Int
        public let operation = 0
        public let nrSegments = 1
        public let handle = 2
        public let id: Int
        public let sectorNumber: Int
        /// First segment; for discard, `nr_sectors` sits here instead.
        public let segments: Int
    }

    public struct ResponseLayout: Sendable, Equatable {
        public let size: Int
        public let id = 0
        public let operation = 8
        public let status = 10
    }

    public var request: RequestLayout {
        switch self {
        case .native, .x86_64: RequestLayout(size: 112, id: 8, sectorNumber: 16, segments: 24)
        case .x86_32: RequestLayout(size: 108, id: 4, sectorNumber: 12, segments: 20)
        }
    }

    public var response: ResponseLayout {
        switch self {
        case .native, .x86_64: ResponseLayout(size: 16)
        case .x86_32: ResponseLayout(size: 12)
        }
    }

    /// A ring slot holds the union of a request and a response.
    public var ringEntrySize: Int { max(request.size, response.size) }

    /// Slots in the shared ring for this ABI.
    public var ringSize: Int { Blkif.ringSize(entrySize: ringEntrySize) }

    /// The seed's `max_mapped_grant_pages`: one ring's worth of segments.
    public var maxPersistentGrants: Int { ringSize * Blkif.maxSegmentsPerRequest }
}

/// Size of one segment descriptor `{u32 gref; u8 first_sect; u8 last_sect; u16 pad}`.
public let blkifSegmentSize = 8
