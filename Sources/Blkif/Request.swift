/// One segment of a read/write request: a granted page and the sectors of it used.
public struct BlkifSegment: Hashable, Sendable, CustomStringConvertible {
    public var gref: GrantRef
    public var firstSect: UInt8
    public var lastSect: UInt8

    public init(gref: GrantRef, firstSect: UInt8, lastSect: UInt8) {
        self.gref = gref
        self.firstSect = firstSect
        self.lastSect = lastSect
    }

    /// Whether the sector range lies inside one page and is not reversed.
    public var isWellFormed: Bool {
        Int(lastSect) < Blkif.sectorsPerPage && lastSect >= firstSect
    }

    /// Sectors covered; only meaningful when `isWellFormed`.
    public var sectorCount: Int { Int(lastSect) - Int(firstSect) + 1 }

    public var description: String { "\(gref):\(firstSect)-\(lastSect)" }
}

/// A ring request, decoded. It keeps what the bytes say even where they lie
/// (`nrSegments` need not match `segments.count`) so that a backend can be fed
/// exactly what a malicious or buggy frontend put on the ring.
public struct BlkifRequest: Hashable, Sendable {
    /// Raw opcode; may be one `BlkifOperation` does not name.
    public var operation: UInt8
    /// The `nr_segments` field (for discard, the `flag` byte at the same place).
    public var nrSegments: UInt8
    public var handle: UInt16
    public var id: UInt64
    public var sectorNumber: UInt64
    /// The segment slots carried, in order (at most 11). Unused slots are zero.
    public var segments: [BlkifSegment]
    /// `nr_sectors` of a discard request; it occupies the first segment slot.
    public var discardSectors: UInt64

    public init(operation: UInt8, nrSegments: UInt8? = nil, handle: UInt16 = 0, id: UInt64,
                sectorNumber: UInt64, segments: [BlkifSegment] = [], discardSectors: UInt64 = 0) {
        precondition(segments.count <= Blkif.maxSegmentsPerRequest, "a ring slot holds at most 11 segments")
        self.operation = operation
        self.nrSegments = nrSegments ?? UInt8(segments.count)
        self.handle = handle
        self.id = id
        self.sectorNumber = sectorNumber
        self.segments = segments
        self.discardSectors = discardSectors
    }

    public var knownOperation: BlkifOperation? { BlkifOperation(rawValue: operation) }

    /// How many segments the backend will look at: `effectiveSegments.count`
    /// without building the array.
    public var effectiveSegmentCount: Int {
        Int(nrSegments) <= Blkif.maxSegmentsPerRequest ? Int(nrSegments) : 0
    }

    /// `effectiveSegments[index]` without building the array; `index` must be
    /// below `effectiveSegmentCount`.
    public func effectiveSegment(at index: Int) -> BlkifSegment {
        index < segments.count ? segments[index] : BlkifSegment(gref: 0, firstSect: 0, lastSect: 0)
    }
    public var isDiscard: Bool { operation == BlkifOperation.discard.rawValue }

    /// The segments the backend will look at: the first `nr_segments`, when
    /// that is a legal count. Slots beyond those carried read as zero.
    public var effectiveSegments: [BlkifSegment] {
        let count = Int(nrSegments)
        guard count <= Blkif.maxSegmentsPerRequest else { return [] }
        // The usual request carries exactly its segments: share the array
        // instead of copying it (an array of a non-standard type costs a
        // runtime metadata lookup besides the allocation).
        if count == segments.count { return segments }
        if count < segments.count { return Array(segments.prefix(count)) }
        return segments + Array(repeating: BlkifSegment(gref: 0, firstSect: 0, lastSect: 0),
                                count: count - segments.count)
    }
}

public struct BlkifResponse: Hashable, Sendable {
    public var id: UInt64
    public var operation: UInt8
    public var status: Int16

    public init(id: UInt64, operation: UInt8, status: Int16) {
        self.id = id
        self.operation = operation
        self.status = status
    }
}

public enum BlkifDecodingError: Error, Equatable, CustomStringConvertible {
    case wrongSize(expected: Int, got: Int, what: String)

    public var description: String {
        switch self {
        case let .wrongSize(expected, got, what):
            "a \(what) is \(expected) bytes in this protocol, got \(got)"
        }
    }
}

extension BlkifProtocol {
    /// The request exactly as its bytes stand in a ring slot.
    public func encode(_ request: BlkifRequest) -> [UInt8] {
        let layout = self.request
        // Written in place into one zeroed buffer: a request is encoded per
        // ring event, and per-byte stores through the array checked its
        // uniqueness every time.
        return [UInt8](unsafeUninitializedCapacity: layout.size) { buffer, initialized in
            buffer.initialize(repeating: 0)
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw[layout.operation] = request.operation
            raw[layout.nrSegments] = request.nrSegments
            raw.storeLE(request.handle, at: layout.handle)
            raw.storeLE(request.id, at: layout.id)
            raw.storeLE(request.sectorNumber, at: layout.sectorNumber)
            if request.isDiscard {
                raw.storeLE(request.discardSectors, at: layout.segments)
            } else {
                for (index, segment) in request.segments.enumerated() {
                    let base = layout.segments + index * blkifSegmentSize
                    raw.storeLE(segment.gref, at: base)
                    raw[base + 4] = segment.firstSect
                    raw[base + 5] = segment.lastSect
                }
            }
            initialized = layout.size
        }
    }

    /// Decodes a ring slot. Segment slots are kept up to the larger of the
    /// claimed count and the last non-zero slot, so re-encoding loses nothing
    /// but padding (which `encode(decode(b)) == b` detects).
    public func decodeRequest(_ bytes: some RandomAccessCollection<UInt8>) throws(BlkifDecodingError) -> BlkifRequest {
        let layout = self.request
        guard bytes.count == layout.size else {
            throw .wrongSize(expected: layout.size, got: bytes.count, what: "\(self) request")
        }
        if let request = bytes.withContiguousStorageIfAvailable({ decodeRequest(UnsafeRawBufferPointer($0), layout) }) {
            return request
        }
        return Array(bytes).withUnsafeBytes { decodeRequest($0, layout) }
    }

    /// Decodes a slot of the right size straight from its bytes.
    private func decodeRequest(_ raw: UnsafeRawBufferPointer, _ layout: RequestLayout) -> BlkifRequest {
        let operation = raw[layout.operation]
        let nr = raw[layout.nrSegments]
        var request = BlkifRequest(operation: operation, nrSegments: nr,
                                   handle: raw.loadLE(UInt16.self, at: layout.handle),
                                   id: raw.loadLE(UInt64.self, at: layout.id),
                                   sectorNumber: raw.loadLE(UInt64.self, at: layout.sectorNumber))
        if operation == BlkifOperation.discard.rawValue {
            request.discardSectors = raw.loadLE(UInt64.self, at: layout.segments)
            return request
        }
        func segment(_ index: Int) -> BlkifSegment {
            let base = layout.segments + index * blkifSegmentSize
            return BlkifSegment(gref: raw.loadLE(UInt32.self, at: base), firstSect: raw[base + 4], lastSect: raw[base + 5])
        }
        var lastNonZero = -1
        for index in (0..<Blkif.maxSegmentsPerRequest).reversed() {
            let slot = segment(index)
            if slot.gref != 0 || slot.firstSect != 0 || slot.lastSect != 0 {
                lastNonZero = index
                break
            }
        }
        let kept = max(min(Int(nr), Blkif.maxSegmentsPerRequest), lastNonZero + 1)
        if kept == Blkif.maxSegmentsPerRequest {
            // A full slot (the usual large request) as an array literal: a
            // literal allocates through metadata known at compile time, while
            // building from a count looks the array's type up at run time
            // (measured: about 900 instructions per request against 400).
            request.segments = [segment(0), segment(1), segment(2), segment(3), segment(4), segment(5),
                                segment(6), segment(7), segment(8), segment(9), segment(10)]
            return request
        }
        // Sized once: appending slot by slot regrew the array several times per request.
        request.segments = [BlkifSegment](unsafeUninitializedCapacity: kept) { buffer, initialized in
            for index in 0..<kept { buffer.initializeElement(at: index, to: segment(index)) }
            initialized = kept
        }
        return request
    }

    /// The response as it stands in a ring slot, padding zero.
    public func encode(_ response: BlkifResponse) -> [UInt8] {
        let layout = self.response
        var bytes = [UInt8](repeating: 0, count: layout.size)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeLE(response.id, at: layout.id)
            raw[layout.operation] = response.operation
            raw.storeLE(UInt16(bitPattern: response.status), at: layout.status)
        }
        return bytes
    }

    public func decodeResponse(_ bytes: some RandomAccessCollection<UInt8>) throws(BlkifDecodingError) -> BlkifResponse {
        let layout = self.response
        guard bytes.count == layout.size else {
            throw .wrongSize(expected: layout.size, got: bytes.count, what: "\(self) response")
        }
        func decode(_ raw: UnsafeRawBufferPointer) -> BlkifResponse {
            BlkifResponse(id: raw.loadLE(UInt64.self, at: layout.id), operation: raw[layout.operation],
                          status: Int16(bitPattern: raw.loadLE(UInt16.self, at: layout.status)))
        }
        if let response = bytes.withContiguousStorageIfAvailable({ decode(UnsafeRawBufferPointer($0)) }) {
            return response
        }
        return Array(bytes).withUnsafeBytes(decode)
    }
}

extension UnsafeRawBufferPointer {
    /// Little-endian load at any alignment.
    @usableFromInline
    func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension UnsafeMutableRawBufferPointer {
    /// Little-endian store at any alignment.
    @usableFromInline
    func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}
