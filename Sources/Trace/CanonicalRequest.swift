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
        var segments = request.isDiscard ? [] : request.segments
        while let last = segments.last, last.gref == 0, last.firstSect == 0, last.lastSect == 0 {
            segments.removeLast()
        }
        let event = RequestEvent(
            id: request.id, operation: request.operation, sector: request.sectorNumber, segments: segments,
            nrSegments: Int(request.nrSegments) == segments.count ? nil : request.nrSegments,
            nrSectors: request.isDiscard && request.discardSectors != 0 ? request.discardSectors : nil,
            handle: request.handle, vbd: vbd, hold: hold)
        guard ringProtocol.encode(event.blkifRequest) == bytes else { return nil }
        self = event
    }

    /// This event in canonical form: the same ring bytes in every protocol
    /// (the layouts carry the same fields), the same vbd and hold.
    public var canonical: RequestEvent {
        let bytes = BlkifProtocol.native.encode(blkifRequest)
        // Encoding an event gives bytes some event encodes to, so this cannot fail.
        return RequestEvent(ringBytes: bytes, protocol: .native, vbd: vbd, hold: hold)!
    }
}
