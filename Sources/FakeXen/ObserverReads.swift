import Blkif

/// What an observer reads of one segment's page: the guest page its gref
/// names now (nil if none: an unknown or revoked gref) and, when asked for,
/// the page's eight sector tokens (zeros otherwise, or where there is no page).
public struct SegmentPageRead: Sendable {
    public var page: GuestPage?
    public var tokens: SIMD8<UInt64>

    public init(page: GuestPage?, tokens: SIMD8<UInt64>) {
        self.page = page
        self.tokens = tokens
    }
}

/// Batch reads for observers (the oracle), which look at every segment of
/// every request: one call per request instead of two per segment (`guestPage`
/// then `GuestMemory.pageTokens`), each of which was a call into this module
/// that the caller's module cannot inline, with its own load stalls.
extension GrantTable {
    /// For each of `segments`, what `guestPage(domid:gref:)` answers for its
    /// gref and, if `memory` is given, that page's tokens as
    /// `memory.pageTokens` reads them: `reads[i]` for `segments[i]`.
    /// `reads` must hold at least `segments.count` elements. Only reads.
    public func readSegmentPages(_ segments: [BlkifSegment], of domid: DomainID, tokensFrom memory: GuestMemory?,
                                 into reads: UnsafeMutableBufferPointer<SegmentPageRead>) {
        precondition(reads.count >= segments.count, "one read per segment")
        for (index, segment) in segments.enumerated() {
            let page = guestPage(domid: domid, gref: segment.gref)
            var tokens = SIMD8<UInt64>()
            if let page, let memory { tokens = memory.tokens(of: page) }
            reads.initializeElement(at: index, to: SegmentPageRead(page: page, tokens: tokens))
        }
    }
}
