import FakeXen

/// The reference's disk: sector → token, every sector reading as its
/// initial token until written.
///
/// Kept as RUNS, so that it stays in cache: the guest stamps a write's
/// sectors with consecutive tokens, and a sector's initial token is its
/// block's first token plus its offset, so within a block a sector's token
/// is its offset plus a number (its run's `delta`) that changes only where
/// one write's sectors end and another's begin. A block keeps up to
/// `maxRuns` runs in a record of 64 words (512 bytes, where its tokens take
/// 4 KiB): a large workload's model is a few hundred KiB instead of as
/// large as what it wrote, and it no longer pushes the fake Xen's ramdisk
/// and guest pages out of the cache. A block whose writes leave more runs
/// than a record holds (tokens that do not count up, e.g. a write of pages a
/// read filled) keeps its tokens one by one from then on, as every block
/// was kept before; either way every sector reads exactly as written.
///
/// Blocks are made on first write and found by their number through an
/// array (numbers below `denseBlockLimit`: a disk of up to 256 GiB) or else
/// a dictionary. I/O runs over consecutive sectors, so a segment touches
/// one block, or two, and never hashes.
struct DiskModel {
    private static let sectorsPerBlock = 512
    /// Records (and blocks of tokens) are kept in chunks of this many, each
    /// allocated whole when the first of them is made: a growing disk never
    /// copies what it holds.
    private static let blocksPerChunk = 64
    private static let denseBlockLimit: UInt64 = 1 << 20
    /// A record: word 0 the header, words 1...31 the runs' first offsets (in
    /// increasing order, the first 0), words 32...62 their deltas.
    private static let recordWords = 64
    private static let maxRuns = 31
    private static let deltasAt = 1 + maxRuns
    /// Header bit: the block keeps its tokens one by one, in the token
    /// block whose place is the header's other bits. Clear: the header is
    /// how many runs the record holds (1...maxRuns).
    private static let tokensFlag: UInt64 = 1 << 63

    /// Block number → 1 + its place among the blocks; 0 for a block never written.
    /// Grows only as far as the largest block number written.
    private var denseIndex: [Int32] = []
    /// Block number → its place among the blocks, for numbers too large for `denseIndex`.
    private var sparseIndex: [UInt64: Int] = [:]
    /// The blocks' records: place p's in chunk `p / blocksPerChunk`, from
    /// `(p % blocksPerChunk) * recordWords` on.
    private var recordChunks: [[UInt64]] = []
    private var blockCount = 0
    /// Token blocks of the blocks that outgrew their records, laid out as the records are.
    private var tokenChunks: [[UInt64]] = []
    private var tokenBlockCount = 0

    /// The block's place; nil when it was never written.
    @inline(__always)
    private func place(ofBlock number: UInt64) -> Int? {
        if number < Self.denseBlockLimit {
            let index = Int(number)
            guard index < denseIndex.count, denseIndex[index] != 0 else { return nil }
            return Int(denseIndex[index] - 1)
        }
        return sparseIndex[number]
    }

    /// The block's place, made (one run of its initial tokens) if new.
    private mutating func placeCreating(block number: UInt64) -> Int {
        if let place = place(ofBlock: number) { return place }
        let place = blockCount
        blockCount += 1
        if place / Self.blocksPerChunk == recordChunks.count {
            recordChunks.append([UInt64](repeating: 0, count: Self.blocksPerChunk * Self.recordWords))
        }
        // Sector `first + offset` starts as `initialToken(first) + offset`:
        // `first` is a multiple of 512 and the initial tokens differ from
        // the sector numbers only above bit 47, so no carry crosses them.
        let first = number &* UInt64(Self.sectorsPerBlock)
        let delta = Ramdisk.initialToken(sector: first)
        withRecord(place) { record in
            record[0] = 1
            record[1] = 0
            record[Self.deltasAt] = delta
        }
        if number < Self.denseBlockLimit {
            let index = Int(number)
            if index >= denseIndex.count {
                let size = max(index + 1, denseIndex.count * 2, 64)
                denseIndex.append(contentsOf: repeatElement(0, count: size - denseIndex.count))
            }
            denseIndex[index] = Int32(place + 1)
        } else {
            sparseIndex[number] = place
        }
        return place
    }

    /// `body` with the record of the block in `place`, to change in place.
    @inline(__always)
    private mutating func withRecord<Result>(_ place: Int, _ body: (UnsafeMutablePointer<UInt64>) -> Result) -> Result {
        recordChunks[place / Self.blocksPerChunk].withUnsafeMutableBufferPointer { chunk in
            body(chunk.baseAddress! + (place % Self.blocksPerChunk) * Self.recordWords)
        }
    }

    /// `body` with the record of the block in `place`, to read.
    @inline(__always)
    private func readingRecord<Result>(_ place: Int, _ body: (UnsafePointer<UInt64>) -> Result) -> Result {
        recordChunks[place / Self.blocksPerChunk].withUnsafeBufferPointer { chunk in
            body(chunk.baseAddress! + (place % Self.blocksPerChunk) * Self.recordWords)
        }
    }

    /// The sector's token.
    func token(_ sector: UInt64) -> UInt64 {
        var token: UInt64 = 0
        withUnsafeMutablePointer(to: &token) { read(into: UnsafeMutableBufferPointer(start: $0, count: 1), from: sector) }
        return token
    }

    mutating func write(_ token: UInt64, at sector: UInt64) {
        var token = token
        withUnsafePointer(to: &token) { write(UnsafeBufferPointer(start: $0, count: 1), at: sector) }
    }

    /// Consecutive sectors from `sector` on, read into `tokens`: one block
    /// lookup per block the run touches, not one per sector.
    func read(into tokens: UnsafeMutableBufferPointer<UInt64>, from sector: UInt64) {
        var sector = sector
        var done = 0
        while done < tokens.count {
            let offset = Int(sector % UInt64(Self.sectorsPerBlock))
            let count = min(tokens.count - done, Self.sectorsPerBlock - offset)
            let into = tokens.baseAddress! + done
            if let place = place(ofBlock: sector / UInt64(Self.sectorsPerBlock)) {
                let header = readingRecord(place) { $0[0] }
                if header & Self.tokensFlag != 0 {
                    let tokenPlace = Int(header & ~Self.tokensFlag)
                    tokenChunks[tokenPlace / Self.blocksPerChunk].withUnsafeBufferPointer { chunk in
                        into.update(from: chunk.baseAddress! + (tokenPlace % Self.blocksPerChunk) * Self.sectorsPerBlock
                                        + offset, count: count)
                    }
                } else {
                    readingRecord(place) { Self.expand($0, into: into, offset: offset, count: count) }
                }
            } else {
                for step in 0..<count { into[step] = Ramdisk.initialToken(sector: sector &+ UInt64(step)) }
            }
            done += count
            sector &+= UInt64(count)
        }
    }

    /// The tokens a record's runs give offsets `offset ..< offset + count`.
    private static func expand(_ record: UnsafePointer<UInt64>, into: UnsafeMutablePointer<UInt64>,
                               offset: Int, count: Int) {
        let runs = Int(record[0])
        let starts = record + 1
        let deltas = record + deltasAt
        var run = 0
        while run + 1 < runs, starts[run + 1] <= UInt64(offset) { run += 1 }
        var done = 0
        while done < count {
            let end = run + 1 < runs ? Int(starts[run + 1]) : sectorsPerBlock
            let stop = min(end - offset, count)
            // Wrapping arithmetic throughout, so the loop has no trap to check
            // and is done several tokens at a time.
            let startToken = UInt64(truncatingIfNeeded: offset) &+ deltas[run]
            for index in done ..< stop { into[index] = startToken &+ UInt64(truncatingIfNeeded: index) }
            done = stop
            run += 1
        }
    }

    /// `tokens` written to consecutive sectors from `sector` on, as writing
    /// each in turn: one block lookup per block the run touches.
    mutating func write(_ tokens: UnsafeBufferPointer<UInt64>, at sector: UInt64) {
        var sector = sector
        var done = 0
        while done < tokens.count {
            let offset = Int(sector % UInt64(Self.sectorsPerBlock))
            let count = min(tokens.count - done, Self.sectorsPerBlock - offset)
            let place = placeCreating(block: sector / UInt64(Self.sectorsPerBlock))
            writeBlock(place, UnsafeBufferPointer(start: tokens.baseAddress! + done, count: count), offset: offset)
            done += count
            sector &+= UInt64(count)
        }
    }

    /// `tokens` to offsets `offset ..< offset + tokens.count` of the block in `place`.
    private mutating func writeBlock(_ place: Int, _ tokens: UnsafeBufferPointer<UInt64>, offset: Int) {
        if readingRecord(place, { $0[0] }) & Self.tokensFlag == 0 {
            if withRecord(place, { Self.merge(tokens, at: offset, into: $0) }) { return }
            spillTokens(of: place)
        }
        let tokenPlace = Int(readingRecord(place) { $0[0] } & ~Self.tokensFlag)
        tokenChunks[tokenPlace / Self.blocksPerChunk].withUnsafeMutableBufferPointer { chunk in
            (chunk.baseAddress! + (tokenPlace % Self.blocksPerChunk) * Self.sectorsPerBlock + offset)
                .update(from: tokens.baseAddress!, count: tokens.count)
        }
    }

    /// The record's runs with `tokens` written from `offset` on: the runs
    /// before the write, the write's own, the run its end falls in (carrying
    /// on after it) and the runs after, adjacent runs of one delta as one.
    /// False, with the record unchanged, when they are more than it holds.
    private static func merge(_ tokens: UnsafeBufferPointer<UInt64>, at offset: Int,
                              into record: UnsafeMutablePointer<UInt64>) -> Bool {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 2 * maxRuns) { list in
            let starts = list.baseAddress!
            let deltas = starts + maxRuns
            var listed = 0
            @inline(__always) func add(_ start: Int, _ delta: UInt64) -> Bool {
                if listed > 0, deltas[listed - 1] == delta { return true }
                guard listed < maxRuns else { return false }
                starts[listed] = UInt64(start)
                deltas[listed] = delta
                listed += 1
                return true
            }
            let runs = Int(record[0])
            let oldStarts = record + 1
            let oldDeltas = record + deltasAt
            var run = 0
            while run < runs, Int(oldStarts[run]) < offset {
                guard add(Int(oldStarts[run]), oldDeltas[run]) else { return false }
                run += 1
            }
            // The write's own runs. The usual write counts up all the way: one
            // pass with no branch per token says so.
            let base = UnsafeRawPointer(tokens.baseAddress!).assumingMemoryBound(to: UInt64.self)
            // (Wrapping arithmetic and no early exit, so it is done several
            // tokens at a time.)
            var differs: UInt64 = 0
            for index in 0..<tokens.count { differs |= base[index] ^ (base[0] &+ UInt64(truncatingIfNeeded: index)) }
            if differs == 0 {
                guard add(offset, base[0] &- UInt64(offset)) else { return false }
            } else {
                var index = 0
                while index < tokens.count {
                    let delta = base[index] &- UInt64(offset + index)
                    guard add(offset + index, delta) else { return false }
                    index += 1
                    while index < tokens.count, base[index] &- UInt64(offset + index) == delta { index += 1 }
                }
            }
            let end = offset + tokens.count
            if end < sectorsPerBlock {
                // The run the write's end falls in carries on after it.
                var covering = max(run - 1, 0)
                while covering + 1 < runs, Int(oldStarts[covering + 1]) <= end { covering += 1 }
                guard add(end, oldDeltas[covering]) else { return false }
                for later in (covering + 1) ..< runs {
                    guard add(Int(oldStarts[later]), oldDeltas[later]) else { return false }
                }
            }
            record[0] = UInt64(listed)
            (record + 1).update(from: starts, count: listed)
            (record + deltasAt).update(from: deltas, count: listed)
            return true
        }
    }

    /// The block in `place` keeps its tokens one by one from now on: its runs
    /// are written out into a token block of its own.
    private mutating func spillTokens(of place: Int) {
        let tokenPlace = tokenBlockCount
        tokenBlockCount += 1
        if tokenPlace / Self.blocksPerChunk == tokenChunks.count {
            tokenChunks.append([UInt64](repeating: 0, count: Self.blocksPerChunk * Self.sectorsPerBlock))
        }
        do {
            // Scoped: a reference to the chunk still held when the header is
            // written below would make that write copy the chunk.
            let records = recordChunks[place / Self.blocksPerChunk]
            records.withUnsafeBufferPointer { chunk in
                let record = chunk.baseAddress! + (place % Self.blocksPerChunk) * Self.recordWords
                tokenChunks[tokenPlace / Self.blocksPerChunk].withUnsafeMutableBufferPointer { tokens in
                    Self.expand(record, into: tokens.baseAddress! + (tokenPlace % Self.blocksPerChunk) * Self.sectorsPerBlock,
                                offset: 0, count: Self.sectorsPerBlock)
                }
            }
        }
        withRecord(place) { $0[0] = Self.tokensFlag | UInt64(tokenPlace) }
    }

    /// A discard: the sector reads as new again.
    mutating func erase(_ sector: UInt64) {
        guard place(ofBlock: sector / UInt64(Self.sectorsPerBlock)) != nil else { return }
        write(Ramdisk.initialToken(sector: sector), at: sector)
    }
}
