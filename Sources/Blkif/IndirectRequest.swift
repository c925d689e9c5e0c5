/// Indirect descriptors (`BLKIF_OP_INDIRECT`, io/blkif.h since Linux 3.11):
/// a ring request that names up to eight guest pages, each holding up to 512
/// segment descriptors, so that one request can move more than 11 pages.
extension Blkif {
    /// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`: the `indirect_grefs` array.
    public static let maxIndirectPagesPerRequest = 8
    /// Segment descriptors in one indirect page (4096 / 8).
    public static let segmentsPerIndirectPage = pageSize / blkifSegmentSize

    /// `INDIRECT_PAGES(n)`: the indirect pages that `n` segments fill.
    public static func indirectPages(forSegments count: Int) -> Int {
        precondition(count >= 0, "a segment count is not negative")
        return (count + segmentsPerIndirectPage - 1) / segmentsPerIndirectPage
    }
}

/// An indirect request as it stands in a ring slot. It keeps what the bytes
/// say even where they lie: `nrSegments` is the u16 field, which a backend
/// must check against its own limit; all eight page grefs are carried,
/// whether or not `nrSegments` needs them.
public struct BlkifIndirectRequest: Hashable, Sendable {
    /// `indirect_op`: the operation the segments carry out (the backend
    /// accepts read and write only).
    public var indirectOperation: UInt8
    public var nrSegments: UInt16
    public var handle: UInt16
    public var id: UInt64
    public var sectorNumber: UInt64
    /// `indirect_grefs[8]`, the pages holding the segment descriptors.
    public var indirectGrefs: [GrantRef]

    public init(indirectOperation: UInt8, nrSegments: UInt16, handle: UInt16 = 0, id: UInt64,
                sectorNumber: UInt64, indirectGrefs: [GrantRef]) {
        precondition(indirectGrefs.count <= Blkif.maxIndirectPagesPerRequest,
                     "an indirect request names at most 8 pages")
        self.indirectOperation = indirectOperation
        self.nrSegments = nrSegments
        self.handle = handle
        self.id = id
        self.sectorNumber = sectorNumber
        self.indirectGrefs = indirectGrefs
            + Array(repeating: 0, count: Blkif.maxIndirectPagesPerRequest - indirectGrefs.count)
    }
}

extension BlkifProtocol {
    /// Field offsets of `blkif_request_indirect` (packed) in one ABI. The
    /// struct is smaller than the ring slot; the slot's remaining bytes are
    /// not part of the request.
    public struct IndirectRequestLayout: Sendable, Equatable {
        public let size: Int
        public let operation = 0
        public let indirectOperation = 1
        public let nrSegments = 2
        public let id: Int
        public let sectorNumber: Int
        public let handle: Int
        public let indirectGrefs: Int
    }

    /// x86_64 pads after `nr_segments` so that `id` sits at 8; x86_32 does
    /// not, and pads 8 bytes after the grefs instead of 4: both are 64 bytes.
    public var indirectRequest: IndirectRequestLayout {
        switch self {
        case .native, .x86_64: IndirectRequestLayout(size: 64, id: 8, sectorNumber: 16, handle: 24, indirectGrefs: 28)
        case .x86_32: IndirectRequestLayout(size: 64, id: 4, sectorNumber: 12, handle: 20, indirectGrefs: 24)
        }
    }

    /// The whole ring slot (the protocol's request size) of an indirect
    /// request; bytes past the indirect struct are zero.
    public func encode(_ request: BlkifIndirectRequest) -> [UInt8] {
        let layout = indirectRequest
        var bytes = [UInt8](repeating: 0, count: self.request.size)
        bytes.withUnsafeMutableBytes { raw in
            raw[layout.operation] = BlkifOperation.indirect.rawValue
            raw[layout.indirectOperation] = request.indirectOperation
            raw.storeLE(request.nrSegments, at: layout.nrSegments)
            raw.storeLE(request.id, at: layout.id)
            raw.storeLE(request.sectorNumber, at: layout.sectorNumber)
            raw.storeLE(request.handle, at: layout.handle)
            for (index, gref) in request.indirectGrefs.enumerated() {
                raw.storeLE(gref, at: layout.indirectGrefs + index * 4)
            }
        }
        return bytes
    }

    /// Decodes a ring slot whose operation byte is `BLKIF_OP_INDIRECT`; nil
    /// for any other operation.
    public func decodeIndirectRequest(_ bytes: some RandomAccessCollection<UInt8>)
        throws(BlkifDecodingError) -> BlkifIndirectRequest? {
        let slotSize = self.request.size
        guard bytes.count == slotSize else {
            throw .wrongSize(expected: slotSize, got: bytes.count, what: "\(self) request")
        }
        let layout = indirectRequest
        return Array(bytes).withUnsafeBytes { raw -> BlkifIndirectRequest? in
            guard raw[layout.operation] == BlkifOperation.indirect.rawValue else { return nil }
            let grefs = (0..<Blkif.maxIndirectPagesPerRequest).map {
                raw.loadLE(UInt32.self, at: layout.indirectGrefs + $0 * 4)
            }
            return BlkifIndirectRequest(indirectOperation: raw[layout.indirectOperation],
                                        nrSegments: raw.loadLE(UInt16.self, at: layout.nrSegments),
                                        handle: raw.loadLE(UInt16.self, at: layout.handle),
                                        id: raw.loadLE(UInt64.self, at: layout.id),
                                        sectorNumber: raw.loadLE(UInt64.self, at: layout.sectorNumber),
                                        indirectGrefs: grefs)
        }
    }
}

extension BlkifSegment {
    /// The segment's 8 bytes as a descriptor in an indirect page: gref (u32
    /// little-endian), first_sect, last_sect, two zero bytes of padding.
    public var descriptorBytes: [UInt8] {
        [UInt8(truncatingIfNeeded: gref), UInt8(truncatingIfNeeded: gref >> 8),
         UInt8(truncatingIfNeeded: gref >> 16), UInt8(truncatingIfNeeded: gref >> 24), firstSect, lastSect, 0, 0]
    }

    /// The segment of 8 descriptor bytes; nil when they are not 8 or their
    /// padding is not zero (no event writes such a descriptor).
    public init?(descriptorBytes bytes: some Collection<UInt8>) {
        let bytes = Array(bytes)
        guard bytes.count == blkifSegmentSize, bytes[6] == 0, bytes[7] == 0 else { return nil }
        self.init(gref: UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24,
                  firstSect: bytes[4], lastSect: bytes[5])
    }
}

/// The segment descriptors of an indirect request as they lie in its pages:
/// descriptor `i` is at byte `(i % 512) * 8` of page `i / 512`, in the same
/// 8-byte form as a ring segment, identical in every ABI.
public enum IndirectSegmentPages {
    /// The bytes of the pages that hold `segments`, one 4096-byte array per
    /// page; unused descriptors are zero.
    public static func encode(_ segments: [BlkifSegment]) -> [[UInt8]] {
        descriptorBytes(segments).map { $0 + [UInt8](repeating: 0, count: Blkif.pageSize - $0.count) }
    }

    /// What a frontend writes at the start of each page that `segments`
    /// fill: the descriptors' bytes, 512 to a page (the last page's may be
    /// shorter); the rest of each page is not written.
    public static func descriptorBytes(_ segments: [BlkifSegment]) -> [[UInt8]] {
        stride(from: 0, to: segments.count, by: Blkif.segmentsPerIndirectPage).map { start in
            segments[start..<min(segments.count, start + Blkif.segmentsPerIndirectPage)].flatMap(\.descriptorBytes)
        }
    }

    /// Descriptor `index` read from the page bytes that hold it.
    public static func segment(_ index: Int, in page: [UInt8]) -> BlkifSegment {
        precondition(page.count == Blkif.pageSize, "an indirect page is one page")
        let offset = (index % Blkif.segmentsPerIndirectPage) * blkifSegmentSize
        return page.withUnsafeBytes { raw in
            BlkifSegment(gref: raw.loadLE(UInt32.self, at: offset), firstSect: raw[offset + 4],
                         lastSect: raw[offset + 5])
        }
    }
}
