/// Whole-page reads of tokens, for observers (the oracle) that compare what
/// a segment's I/O moved: one table lookup per page instead of one per sector.
extension GuestMemory {
    /// The eight sector tokens of `page` as they stand (zeros for a released page,
    /// as `token(_:sector:)` reads them).
    public func pageTokens(_ page: GuestPage) -> SIMD8<UInt64> { tokens(of: page) }
}

extension Ramdisk {
    /// The tokens of sectors `first ..< first + count` (`count` in 1...8) in
    /// lanes `0 ..< count`, as `token(at:)` reads each; later lanes are zero.
    public func tokens(from first: UInt64, count: Int) -> SIMD8<UInt64> {
        var tokens = SIMD8<UInt64>()
        // `read` steps one past the last sector it reads: a run ending on the
        // last sector there is would overflow, so that one is read sector by sector.
        if first <= UInt64.max - UInt64(count) {
            read(into: &tokens, pageSectors: 0...(count - 1), from: first)
        } else {
            for lane in 0..<count { tokens[lane] = token(at: first &+ UInt64(lane)) }
        }
        return tokens
    }

    /// The tokens of sectors `first ..< first + tokens.count`, as `token(at:)`
    /// reads each, into `tokens`: one call for a whole run, moved eight
    /// sectors (a page) at a time, each eight one vector when they lie in one
    /// block; the few left over (and a run at the very end of the sector
    /// numbers, where `read` would step past the last) sector by sector.
    public func read(into tokens: UnsafeMutableBufferPointer<UInt64>, from first: UInt64) {
        guard let base = tokens.baseAddress else { return }
        var offset = 0
        while tokens.count - offset >= 8, first &+ UInt64(offset) <= UInt64.max - 8,
              first <= UInt64.max - UInt64(offset) {
            var page = SIMD8<UInt64>()
            read(into: &page, pageSectors: 0...7, from: first &+ UInt64(offset))
            withUnsafeBytes(of: page) { lanes in
                UnsafeMutableRawPointer(base + offset).copyMemory(from: lanes.baseAddress!, byteCount: lanes.count)
            }
            offset += 8
        }
        while offset < tokens.count {
            tokens[offset] = token(at: first &+ UInt64(offset))
            offset += 1
        }
    }
}
