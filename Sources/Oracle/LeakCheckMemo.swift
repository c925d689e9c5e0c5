import Blkif
import FakeXen

/// When `request-leak` last passed: what the reference expected mapped then
/// (its version) and how many mappings of each domain the world held. Live
/// mappings come and go only through map and unmap batches; an event with a
/// batch is always looked at in full, and an event the oracle does not judge
/// (a panic) makes it forget. So after a pass, while no batch ran and the
/// version and counts stand still, nothing the check looks at can have
/// changed. (The counts are the world's own word on that, not only the log's.)
struct LeakCheckMemo {
    private struct Pass {
        let version: MappedHandlesVersion
        let liveCounts: [(domid: DomainID, count: Int)]
    }

    private var lastPass: Pass?

    /// Whether the check passed before with this same expectation and these same counts.
    func stillPasses(_ expected: ExpectedMappings, in world: some ObservedWorld) -> Bool {
        guard let lastPass, let version = expected.version, lastPass.version == version else { return false }
        return lastPass.liveCounts.allSatisfy { world.liveMappingCount(of: $0.domid) == $0.count }
    }

    /// The check passed on `domains` (every domain with a connection).
    mutating func passed(_ expected: ExpectedMappings, domains: [DomainID], in world: some ObservedWorld) {
        guard let version = expected.version else { return forget() }
        lastPass = Pass(version: version, liveCounts: domains.map { ($0, world.liveMappingCount(of: $0)) })
    }

    /// The check failed, or an event went unjudged: the next one is looked at in full.
    mutating func forget() {
        lastPass = nil
    }
}
