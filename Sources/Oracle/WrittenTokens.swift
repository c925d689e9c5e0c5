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
        var tokens: [UInt64]

        func covers(_ sector: UInt64) -> Bool { sector >= first && sector - first < UInt64(tokens.count) }

        /// Whether `sector` comes right after the run (not past the last sector there is).
        func continues(to sector: UInt64) -> Bool {
            let (end, overflow) = first.addingReportingOverflow(UInt64(tokens.count))
            return !overflow && end == sector
        }

        /// Both runs hold a token (they never are empty), so they share a
        /// sector exactly when one starts inside the other.
        func overlaps(_ other: Run) -> Bool { area == other.area && (covers(other.first) || other.covers(first)) }
    }

    private var runs: [Run] = []

    var isEmpty: Bool { runs.isEmpty }

    mutating func write(_ token: UInt64, at sector: UInt64, in area: Area) {
        if let last = runs.indices.last, runs[last].area == area, runs[last].continues(to: sector) {
            runs[last].tokens.append(token)
        } else {
            runs.append(Run(area: area, first: sector, tokens: [token]))
        }
    }

    /// The token last written at `sector` of `area`; nil where the event wrote none.
    func token(at sector: UInt64, in area: Area) -> UInt64? {
        guard let run = runs.last(where: { $0.area == area && $0.covers(sector) }) else { return nil }
        return run.tokens[Int(sector - run.first)]
    }

    /// Every sector written, once, with the token written there last.
    func forEachLatest(_ body: (_ area: Area, _ sector: UInt64, _ token: UInt64) -> Void) {
        for (index, run) in runs.enumerated() {
            let later = runs[(index + 1)...]
            // Usually no later run touches this one; only if one does is each sector asked about.
            let overwritten = later.contains { $0.overlaps(run) }
            for (offset, token) in run.tokens.enumerated() {
                let sector = run.first + UInt64(offset)
                if overwritten && later.contains(where: { $0.area == run.area && $0.covers(sector) }) { continue }
                body(run.area, sector, token)
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
