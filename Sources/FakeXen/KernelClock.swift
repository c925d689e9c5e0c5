/// The host's time, which passes only when a trace says so (`tick`): a
/// backend's periodic work (G2013's LRU purge every 100 ms, G2018's
/// timeout of unused grants) runs where the trace puts it, the same on
/// every replay.
///
/// The kernel counts time in jiffies; here HZ is 1000, so a jiffy is a
/// millisecond and `msecs_to_jiffies` is the identity.
public final class KernelClock {
    /// Jiffies since boot. The clock starts at 0 and never wraps (a trace can
    /// add at most 2^40 ms per tick; the sum saturates).
    public private(set) var jiffies: UInt64 = 0

    public init() {}

    public func advance(milliseconds: UInt64) {
        jiffies = jiffies.addingReportingOverflow(milliseconds).overflow ? .max : jiffies + milliseconds
    }

    /// `time_after(jiffies, deadline)`: strictly after.
    public func isAfter(_ deadline: UInt64) -> Bool { jiffies > deadline }
}

/// blkback's module parameters (`/sys/module/xen_blkback/parameters/*`),
/// with Linux's defaults. A backend reads those its generation has, at the
/// points its code reads them; a trace sets them with `param`.
public struct ModuleParameters: Hashable, Sendable {
    /// `max_persistent_grants` (`xen_blkif_max_pgrants`).
    public var maxPersistentGrants = 1056
    /// `max_buffer_pages`: free pages each device's pool keeps.
    public var maxBufferPages = 1024
    /// `feature_persistent` (Linux 5.10 and later).
    public var featurePersistent = true
    /// `persistent_grant_unused_seconds`; 0 means grants never time out.
    public var persistentGrantUnusedSeconds: UInt32 = 60

    public init() {}
}
