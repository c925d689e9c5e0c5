import Blkif
import FakeXen

/// What a run of a map-first generation (G2013, and G2018, which
/// docs/generations.md specifies as differences from G2013) keeps that no
/// connection owns: the clock, the module parameters, the allocation
/// faults the trace armed, and the guest's bytes. All of it is tracked from
/// the trace itself (and, for armed writes, from when the environment says
/// they landed), never read from the backend.
final class G2013Run {
    /// Whose rules apply where G2018 differs from G2013: `.g2013` or `.g2018`.
    let generation: OracleGeneration
    /// jiffies at HZ 1000: the sum of the trace's ticks (saturating).
    var jiffies: UInt64 = 0
    var parameters = G2013Parameters()
    var allocationFaults = AllocationFaultCountdown()
    var guestBytes = GuestByteShadow()

    init(generation: OracleGeneration = .g2013) {
        precondition(generation != .g2012, "G2012 maps per request and keeps no run state of this kind")
        self.generation = generation
    }

    /// Whether today's rules (docs/generations.md, G2018) replace G2013's
    /// where the two differ.
    var isG2018: Bool { generation == .g2018 }
}

/// The module parameters a map-first generation reads, live, where its
/// code reads them. G2013 has only the first two; the others are G2018's,
/// and a G2013 prediction never reads them (a kernel without a parameter
/// never sees it).
struct G2013Parameters {
    /// `max_persistent_grants`.
    var maxPersistentGrants = 1056
    /// `max_buffer_pages`: the free pages the thread keeps in its pool.
    var maxBufferPages = 1024
    /// `feature_persistent` (G2018, default on): **P** of the negotiation.
    var featurePersistent = true
    /// `persistent_grant_unused_seconds` (G2018, default 60; 0: grants
    /// never time out).
    var persistentGrantUnusedSeconds: UInt64 = 60
}

/// `fail alloc nth=K` as trace-format.md §3 counts it: every armed counter
/// counts each backend allocation down together, and an allocation that
/// brings one or more of them to zero fails (once).
struct AllocationFaultCountdown {
    private var remaining: [Int] = []

    mutating func arm(nth: Int) { remaining.append(nth) }

    /// One allocation happens: whether it fails.
    mutating func allocate() -> Bool {
        guard !remaining.isEmpty else { return false }
        var fails = false
        for index in remaining.indices {
            remaining[index] -= 1
            if remaining[index] == 0 { fails = true }
        }
        if fails { remaining.removeAll { $0 == 0 } }
        return fails
    }
}

/// The byte view of the guest's pages as the trace wrote it: `write`
/// events, the descriptors an `indirect` event writes, and armed writes
/// once the environment says they landed. Pages are never reused, so a
/// released page's bytes are simply never asked for again.
struct GuestByteShadow {
    private var pages: [GuestPage: [UInt8]] = [:]

    mutating func write(_ page: GuestPage, offset: Int, _ bytes: [UInt8]) {
        guard offset >= 0, offset + bytes.count <= Blkif.pageSize else { return }
        pages[page, default: [UInt8](repeating: 0, count: Blkif.pageSize)]
            .replaceSubrange(offset..<offset + bytes.count, with: bytes)
    }

    /// The first `count` bytes of `page` (zeros where never written).
    func prefix(of page: GuestPage, count: Int) -> [UInt8] {
        let count = min(count, Blkif.pageSize)
        guard let stored = pages[page] else { return [UInt8](repeating: 0, count: count) }
        return Array(stored[0..<count])
    }
}
