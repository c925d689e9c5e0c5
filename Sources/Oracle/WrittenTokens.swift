import FakeXen

/// The tokens an event puts in one kind of place (the disk sectors of a vbd,
/// the sectors of a guest page), in the order it puts them: where it writes
/// one sector twice, the later token is the one that must be seen.
///
/// Kept as runs of consecutive sectors, because I/O moves whole segments: a
/// write that continues the last run extends it, so recording a segment
/// costs no hashing at all.
struct WrittenTokens<Area: Equatable> {
    private struct Run {
        let area: Area
        let first: UInt64
        /// Where the run's tokens start in `tokens`.
        let start: Int
        var count: Int

        func covers(_ sector: UInt64) -> Bool { sector >= first && sector - first < UInt64(count) }

        /// Whether `sector` comes right after the run (not past the last sector there is).
        func continues(to sector: UInt64) -> Bool {
            let (end, overflow) = first.addingReportingOverflow(UInt64(count))
            return !overflow && end == sector
        }

        /// Both runs hold a token (they never are empty), so they share a
        /// sector exactly when one starts inside the other.
        func overlaps(_ other: Run) -> Bool { area == other.area && (covers(other.first) || other.covers(first)) }
    }

    private var runs: [Run] = []
    /// Every run's tokens, run after run, in the first `tokenCount` places.
    /// Only the last run grows, so each run's tokens stay together; one list
    /// for all the runs keeps its capacity from event to event, where a list
    /// per run was allocated and grown afresh for every write.
    ///
    /// The list itself never shrinks: the places past `tokenCount` hold
    /// tokens of earlier events, which no run reaches (every run lies below
    /// `tokenCount`). So emptying is one store, and a write fills its places
    /// in place (`write(count:at:in:filling:)`) rather than being built
    /// elsewhere and copied in.
    private var tokens: [UInt64] = []
    private var tokenCount = 0

    var isEmpty: Bool { runs.isEmpty }

    /// Nothing written, keeping the lists' capacity for the next event.
    mutating func removeAll() {
        runs.removeAll(keepingCapacity: true)
        tokenCount = 0
    }

    /// Makes room for `count` tokens at `sector` of `area`: the last run
    /// grows, or a new one starts; returns where the tokens go in `tokens`.
    private mutating func extend(by count: Int, at sector: UInt64, in area: Area) -> Int {
        if let last = runs.indices.last, runs[last].area == area, runs[last].continues(to: sector) {
            runs[last].count += count
        } else {
            runs.append(Run(area: area, first: sector, start: tokenCount, count: count))
        }
        let start = tokenCount
        tokenCount += count
        // Grown only past the most any event wrote so far.
        if tokens.count < tokenCount { tokens.append(contentsOf: repeatElement(0, count: tokenCount - tokens.count)) }
        return start
    }

    mutating func write(_ token: UInt64, at sector: UInt64, in area: Area) {
        let start = extend(by: 1, at: sector, in: area)
        tokens[start] = token
    }

    /// `count` tokens written to consecutive sectors from `sector` on, as
    /// writing each in turn; `fill` puts them straight into their places
    /// (and may read them back, e.g. to copy them elsewhere).
    mutating func write(count: Int, at sector: UInt64, in area: Area,
                        filling fill: (UnsafeMutableBufferPointer<UInt64>) -> Void) {
        guard count > 0 else { return }
        let start = extend(by: count, at: sector, in: area)
        tokens.withUnsafeMutableBufferPointer { all in
            fill(UnsafeMutableBufferPointer(rebasing: all[start ..< start + count]))
        }
    }

    /// The token last written at `sector` of `area`; nil where the event wrote none.
    func token(at sector: UInt64, in area: Area) -> UInt64? {
        guard let run = runs.last(where: { $0.area == area && $0.covers(sector) }) else { return nil }
        return tokens[run.start + Int(sector - run.first)]
    }

    /// Every sector written, once, with the token written there last.
    func forEachLatest(_ body: (_ area: Area, _ sector: UInt64, _ token: UInt64) -> Void) {
        for (index, run) in runs.enumerated() {
            let later = runs[(index + 1)...]
            // Usually no later run touches this one; only if one does is each sector asked about.
            let overwritten = later.contains { $0.overlaps(run) }
            for offset in 0..<run.count {
                let sector = run.first + UInt64(offset)
                if overwritten && later.contains(where: { $0.area == run.area && $0.covers(sector) }) { continue }
                body(run.area, sector, tokens[run.start + offset])
            }
        }
    }

    /// How many sectors were written.
    var count: Int {
        var count = 0
        forEachLatest { _, _, _ in count += 1 }
        return count
    }
}

extension WrittenTokens {
    /// `run` written to consecutive sectors from `sector` on: as writing each
    /// in turn, with one look at the last run and one append.
    mutating func write(_ run: UnsafeBufferPointer<UInt64>, at sector: UInt64, in area: Area) {
        write(count: run.count, at: sector, in: area) { places in
            places.baseAddress!.update(from: run.baseAddress!, count: run.count)
        }
    }

    /// Each run in the order written, with a test of whether a later run
    /// writes a sector of it again (then the later token is the one that
    /// must be seen). Lets a reader fetch a whole run at once; the test is
    /// for the rare sector that disagrees. The tokens are valid only during `body`.
    func forEachRun(_ body: (_ area: Area, _ first: UInt64, _ tokens: UnsafeBufferPointer<UInt64>,
                             _ isOverwritten: (UInt64) -> Bool) -> Void) {
        tokens.withUnsafeBufferPointer { all in
            for (index, run) in runs.enumerated() {
                let later = runs[(index + 1)...]
                let overwritten = later.contains { $0.overlaps(run) }
                body(run.area, run.first, UnsafeBufferPointer(rebasing: all[run.start ..< run.start + run.count])) { sector in
                    overwritten && later.contains { $0.area == run.area && $0.covers(sector) }
                }
            }
        }
    }
}

/// The tokens an event's reads put in guest pages, a page at a time (reads
/// fill whole segments of one page): each page written once in the list,
/// with its eight lanes and a bit per lane written. A lane written twice
/// holds the later token, as the page itself would.
struct GuestPageWrites {
    struct PageWrite {
        let page: GuestPage
        var tokens = SIMD8<UInt64>()
        /// Bit i set: sector i of the page was written.
        var written: UInt8 = 0
    }

    /// Few pages per event (a request has at most 11 segments), so a list
    /// searched from the end beats hashing.
    private(set) var pages: [PageWrite] = []
    /// Bit `number % 64` set for every page in `pages`: a page whose bit is
    /// clear is not in the list, so the usual write (each segment of a read
    /// on a page of its own) appends without searching the list. A set bit
    /// only means the list is searched, as before.
    private var pageBits: UInt64 = 0

    var isEmpty: Bool { pages.isEmpty }

    /// Nothing written, keeping the list's capacity for the next event.
    mutating func removeAll() {
        pages.removeAll(keepingCapacity: true)
        pageBits = 0
    }

    private static func bit(of page: GuestPage) -> UInt64 { 1 << (page.number & 63) }

    /// Where `page` is in the list, if it is there.
    private func index(of page: GuestPage) -> Int? {
        guard pageBits & Self.bit(of: page) != 0 else { return nil }
        return pages.lastIndex { $0.page == page }
    }

    mutating func write(_ tokens: SIMD8<UInt64>, lanes: ClosedRange<Int>, in page: GuestPage) {
        let bits = UInt8(truncatingIfNeeded: ((1 << lanes.count) - 1) << lanes.lowerBound)
        guard let index = index(of: page) else {
            // A page new to the list: its write made whole, then appended once.
            var write = PageWrite(page: page, written: bits)
            Self.copy(lanes, of: tokens, into: &write.tokens)
            pages.append(write)
            pageBits |= Self.bit(of: page)
            return
        }
        Self.copy(lanes, of: tokens, into: &pages[index].tokens)
        pages[index].written |= bits
    }

    /// Lanes `lanes` of `source` into the same lanes of `page`, as one copy
    /// of memory (lane-wise SIMD masks cost more than the copy they save).
    static func copy(_ lanes: ClosedRange<Int>, of source: SIMD8<UInt64>, into page: inout SIMD8<UInt64>) {
        // The usual segment covers its whole page: an assignment, no call to copy memory.
        if lanes.count == 8 {
            page = source
            return
        }
        withUnsafeBytes(of: source) { from in
            withUnsafeMutableBytes(of: &page) { to in
                let offset = lanes.lowerBound * MemoryLayout<UInt64>.stride
                (to.baseAddress! + offset).copyMemory(from: from.baseAddress! + offset,
                                                      byteCount: lanes.count * MemoryLayout<UInt64>.stride)
            }
        }
    }

    /// One sector (0..<8) of `page`.
    mutating func write(_ token: UInt64, at sector: UInt64, in page: GuestPage) {
        var tokens = SIMD8<UInt64>()
        tokens[Int(sector)] = token
        write(tokens, lanes: Int(sector)...Int(sector), in: page)
    }

    /// `tokens` (a page as read elsewhere) with the sectors this event wrote in `page` as it wrote them.
    func overlaid(on tokens: SIMD8<UInt64>, in page: GuestPage) -> SIMD8<UInt64> {
        guard let index = index(of: page) else { return tokens }
        let write = pages[index]
        var result = tokens
        var bits = write.written
        while bits != 0 {
            let lane = bits.trailingZeroBitCount
            result[lane] = write.tokens[lane]
            bits &= bits - 1
        }
        return result
    }

    /// The token last written at `sector` of `page`; nil where the event wrote none.
    func token(at sector: UInt64, in page: GuestPage) -> UInt64? {
        guard sector < 8, let index = index(of: page), pages[index].written & (1 << sector) != 0 else { return nil }
        return pages[index].tokens[Int(sector)]
    }

    /// How many sectors were written.
    var count: Int { pages.reduce(0) { $0 + $1.written.nonzeroBitCount } }
}
