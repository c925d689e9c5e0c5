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
