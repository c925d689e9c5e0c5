import Blkif

/// The one canonical `request` event of a ring slot's bytes, so that text and
/// pcap convert into each other without loss.
///
/// Several events encode to the same bytes (a trailing segment `0:0-0` and
/// an explicit `nr=` that counts it say the same thing; so do a discard with
/// no `nr-sectors=` and one with `nr-sectors=0`). The canonical one carries
/// the segment slots up to the last one that is not all zero, states `nr=`
/// only when it differs from that count, and states `nr-sectors=` only when it
/// is not zero. The text printer prints every request in this form, and the
/// pcap reader turns a ring-request packet into a `request` exactly when its
/// bytes are the encoding of such an event (else it stays `raw`).
extension RequestEvent {
    /// The canonical request whose encoding in `ringProtocol` is exactly
    /// `bytes`; nil when no request event encodes to them (non-zero padding,
    /// non-zero unused slots, a wrong size).
    public init?(ringBytes bytes: [UInt8], protocol ringProtocol: BlkifProtocol, vbd: UInt16 = 0, hold: Bool = false) {
        guard let request = try? ringProtocol.decodeRequest(bytes) else { return nil }
        var event = RequestEvent(fieldsOf: request, vbd: vbd, hold: hold)
        while let last = event.segments.last, last.gref == 0, last.firstSect == 0, last.lastSect == 0 {
            event.segments.removeLast()
        }
        event.nrSegments = Int(request.nrSegments) == event.segments.count ? nil : request.nrSegments
        if event.nrSectors == 0 { event.nrSectors = nil }
        guard ringProtocol.encode(event.blkifRequest) == bytes else { return nil }
        self = event
    }

    /// The same as `init(ringBytes:protocol:vbd:hold:)`, read in place
    /// without decoding into a copy and encoding back. The bytes are the
    /// encoding of a request event exactly when every byte no field covers
    /// is zero: encoding writes the fields and zeroes the rest (the padding
    /// after `handle`, each segment slot's two padding bytes, and for a
    /// discard everything after `nr_sectors`), and every field value is
    /// carried by the canonical event (trailing all-zero segment slots encode
    /// as the zeros they are; `nr=` keeps the count byte).
    public init?(canonicalRingBytes bytes: UnsafeBufferPointer<UInt8>, protocol ringProtocol: BlkifProtocol,
                 vbd: UInt16 = 0, hold: Bool = false) {
        let layout = ringProtocol.request
        guard bytes.count == layout.size else { return nil }
        let raw = UnsafeRawBufferPointer(bytes)
        func load<T: FixedWidthInteger>(_ offset: Int, as _: T.Type) -> T {
            T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        func allZero(_ range: Range<Int>) -> Bool {
            var index = range.lowerBound
            while index < range.upperBound {
                if bytes[index] != 0 { return false }
                index += 1
            }
            return true
        }
        let operation = bytes[layout.operation]
        let nr = bytes[layout.nrSegments]
        // The gaps between the fixed fields (x86_32 packs them with none).
        guard allZero((layout.handle + 2)..<layout.id), allZero((layout.id + 8)..<layout.sectorNumber),
              allZero((layout.sectorNumber + 8)..<layout.segments)
        else { return nil }
        let id = load(layout.id, as: UInt64.self)
        let sector = load(layout.sectorNumber, as: UInt64.self)
        let handle = load(layout.handle, as: UInt16.self)
        if operation == BlkifOperation.discard.rawValue {
            guard allZero((layout.segments + 8)..<layout.size) else { return nil }
            let nrSectors = load(layout.segments, as: UInt64.self)
            self.init(id: id, operation: operation, sector: sector, segments: [],
                      nrSegments: nr == 0 ? nil : nr, nrSectors: nrSectors == 0 ? nil : nrSectors,
                      handle: handle, vbd: vbd, hold: hold)
            return
        }
        let slotsEnd = layout.segments + Blkif.maxSegmentsPerRequest * blkifSegmentSize
        guard allZero(slotsEnd..<layout.size) else { return nil }
        // Segments up to the last slot that is not all zero; each slot's
        // padding zero. A slot is 8 bytes read as one little-endian word:
        // gref in bytes 0-3, first and last sector in 4 and 5, padding in 6-7.
        // They are gathered on the stack and copied into an array of exactly
        // their number in one go: appending one by one checked uniqueness and
        // capacity per segment (and `Array(unsafeUninitializedCapacity:)`
        // allocates through the stdlib's unspecialised path).
        let gathered = withUnsafeTemporaryAllocation(of: BlkifSegment.self, capacity: Blkif.maxSegmentsPerRequest) {
            slots -> (segments: [BlkifSegment], count: Int)? in
            var count = 0
            for slot in 0..<Blkif.maxSegmentsPerRequest {
                let word = load(layout.segments + slot * blkifSegmentSize, as: UInt64.self)
                guard word >> 48 == 0 else { return nil }
                if word != 0 { count = slot + 1 }
                slots.initializeElement(at: slot, to: BlkifSegment(gref: UInt32(truncatingIfNeeded: word),
                                                                     firstSect: UInt8(truncatingIfNeeded: word >> 32),
                                                                     lastSect: UInt8(truncatingIfNeeded: word >> 40)))
            }
            // BlkifSegment is trivial: the slots need no deinitialising.
            return (Array(UnsafeBufferPointer(rebasing: slots[..<count])), count)
        }
        guard let (segments, count) = gathered else { return nil }
        self.init(id: id, operation: operation, sector: sector, segments: segments,
                  nrSegments: Int(nr) == count ? nil : nr, nrSectors: nil, handle: handle, vbd: vbd, hold: hold)
    }

    /// The event that carries a decoded ring request's fields: every segment
    /// slot it decoded, `nr=` only when it differs from their count, and
    /// `nr-sectors=` on a discard. Padding and unused bytes are not fields,
    /// so its encoding may differ from the bytes the request came from.
    public init(fieldsOf request: BlkifRequest, vbd: UInt16 = 0, hold: Bool = false) {
        let segments = request.isDiscard ? [] : request.segments
        self.init(id: request.id, operation: request.operation, sector: request.sectorNumber, segments: segments,
                  nrSegments: Int(request.nrSegments) == segments.count ? nil : request.nrSegments,
                  nrSectors: request.isDiscard ? request.discardSectors : nil,
                  handle: request.handle, vbd: vbd, hold: hold)
    }

    /// This event in canonical form: the same ring bytes in every protocol
    /// (the layouts carry the same fields), the same vbd and hold.
    public var canonical: RequestEvent {
        let bytes = BlkifProtocol.native.encode(blkifRequest)
        // Encoding an event gives bytes some event encodes to, so this cannot fail.
        return RequestEvent(ringBytes: bytes, protocol: .native, vbd: vbd, hold: hold)!
    }
}

extension TraceEventKind {
    /// The event in canonical form after what `state` says the trace set up:
    /// a request canonical, and a raw whose bytes are exactly the encoding of
    /// a request event (in the protocol of the latest connect of its vbd) as
    /// that request. Both replay the same as the original.
    public func canonical(after state: TraceState) -> TraceEventKind {
        switch self {
        case .request(let request):
            return .request(request.canonical)
        case .indirect(let request):
            return .indirect(request.canonical)
        case .raw(let raw):
            guard let ringProtocol = state.ringProtocol(ofVbd: raw.vbd),
                  let request = RequestEvent(ringBytes: raw.bytes, protocol: ringProtocol, vbd: raw.vbd, hold: raw.hold)
            else { return self }
            return .request(request)
        default:
            return self
        }
    }
}

/// The canonical `indirect` event: the descriptors exactly as given (they
/// are bytes the guest writes, so no two lists are the same event), `nr=`
/// only when it differs from their count, and the page grefs up to the last
/// page the descriptors fill or the last one that is not zero, whichever is
/// later (the ring carries zero for the rest, and no descriptor goes there).
extension IndirectRequestEvent {
    public var canonical: IndirectRequestEvent {
        var event = self
        if let nr = nrSegments, Int(nr) == segments.count { event.nrSegments = nil }
        let needed = Blkif.indirectPages(forSegments: segments.count)
        while event.pages.count > needed, event.pages.last == 0 { event.pages.removeLast() }
        return event
    }

    /// The canonical event of an indirect ring slot and the descriptors that
    /// came with it; nil when the slot is not exactly the encoding of one
    /// (another operation, non-zero padding or bytes past the struct, a
    /// wrong size), or when the descriptors need more pages than it names.
    public init?(ringBytes bytes: [UInt8], protocol ringProtocol: BlkifProtocol, segments: [BlkifSegment],
                 vbd: UInt16 = 0, hold: Bool = false) {
        guard let request = (try? ringProtocol.decodeIndirectRequest(bytes)) ?? nil else { return nil }
        let event = IndirectRequestEvent(id: request.id, operation: request.indirectOperation,
                                         sector: request.sectorNumber, segments: segments,
                                         nrSegments: request.nrSegments, pages: request.indirectGrefs,
                                         handle: request.handle, vbd: vbd, hold: hold).canonical
        guard event.pages.count >= Blkif.indirectPages(forSegments: segments.count),
              ringProtocol.encode(event.blkifRequest) == bytes else { return nil }
        self = event
    }
}
