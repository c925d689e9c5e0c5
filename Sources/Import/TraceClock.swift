/// The trace's clock as `tick` events: time starts at the first event that
/// has one and never runs backwards (an earlier timestamp reads as now);
/// each advance ticks the whole milliseconds passed since the last tick,
/// carrying the rest, so the ticks add up to exactly the trace's elapsed
/// time, rounded down to the millisecond.
struct TraceClock {
    private var origin: UInt64?
    private(set) var tickedMilliseconds: UInt64 = 0

    /// The milliseconds to tick so that the clock reads `time` (nanoseconds).
    mutating func advance(to time: UInt64) -> UInt64 {
        guard let origin else {
            origin = time
            return 0
        }
        let elapsed = time > origin ? (time - origin) / 1_000_000 : 0
        guard elapsed > tickedMilliseconds else { return 0 }
        defer { tickedMilliseconds = elapsed }
        return elapsed - tickedMilliseconds
    }
}
