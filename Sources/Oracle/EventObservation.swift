import Blkif
import FakeXen

/// What the fake environment recorded during one event, sorted by kind.
struct EnvironmentRecord {
    /// Everything, in the order it happened (alarms are reported in this order).
    let observations: [Observation]
    /// Where the first map batch is among `observations`; nil when none ran.
    private var firstMapBatch: Int?
    private(set) var mapBatchCount = 0
    private(set) var unmapBatchCount = 0
    /// `pr_alert` lines.
    private(set) var alerts = 0
    private(set) var allocationFailed = false
    /// `BUG()` fired: the host went down during the event.
    private(set) var panicked = false
    /// Something the alarm checks report was observed; most events have
    /// none, and then those checks need not scan the observations.
    private(set) var hasAlarms = false
    /// The backend pushed a response (kept as a flag: the slots are read from
    /// `observations` by the one check that needs them, with no list per event).
    private(set) var wroteResponses = false
    /// The backend read guest bytes (and an armed write may have landed).
    private(set) var readGuestBytes = false

    /// The batches are counted, not listed: most events run none, and two
    /// lists kept per event cost their making and releasing every time.
    /// They are listed on demand (`mapBatches`, `unmapBatches`).
    init(_ observations: consuming [Observation]) {
        self.observations = observations
        for (index, observation) in observations.enumerated() {
            switch observation {
            case .mapBatch:
                if firstMapBatch == nil { firstMapBatch = index }
                mapBatchCount += 1
            case .unmapBatch: unmapBatchCount += 1
            case .allocationFailed: allocationFailed = true
            case .alert: alerts += 1
            case .panic: panicked = true; hasAlarms = true
            case .useAfterFree, .doubleFree, .accessUnmapped, .unmapInUse: hasAlarms = true
            case .responseSlot(let write):
                wroteResponses = true
                if write.host != 0 { hasAlarms = true }
            case .guestRead, .armedWriteLanded: readGuestBytes = true
            case .revoke: break
            }
        }
    }

    /// Whether a map or unmap batch ran during the event.
    var ranBatches: Bool { mapBatchCount + unmapBatchCount > 0 }

    /// The map batches, in order.
    var mapBatches: [MapBatch] {
        guard mapBatchCount > 0 else { return [] }
        return observations.compactMap { if case .mapBatch(let batch) = $0 { batch } else { nil } }
    }

    /// The unmap batches, in order.
    var unmapBatches: [UnmapBatch] {
        guard unmapBatchCount > 0 else { return [] }
        return observations.compactMap { if case .unmapBatch(let batch) = $0 { batch } else { nil } }
    }

    /// What the hypervisor answered to op `op` of the event's map batch (the
    /// first, if there were several); nil when the hypercall failed as a
    /// whole or never got that far.
    func mapResult(op: Int) -> MapResult? {
        guard let firstMapBatch, case .mapBatch(let batch) = observations[firstMapBatch],
              let results = batch.results, op < results.count else { return nil }
        return results[op]
    }
}

/// What a check may look at after one event besides the world itself and
/// the backend's publications: what the environment recorded (never the
/// backend's internals). Two things are read in the light of the prediction:
/// which connection to look at, and which unmaps were expected.
///
/// The world is not stored here: the few checks that read it take it as an
/// argument. A stored generic world made this value be destroyed through
/// its type's metadata on every event. Nor are the publications: the three
/// checks that read them are handed them, and a stored list was retained
/// for this value and released with it on every event.
struct EventObservation {
    let environment: EnvironmentRecord
    /// What the backend publishes about the connection the event acted on
    /// (`Prediction.connectionVbd`); nil when it holds no such connection.
    let connection: ObservedConnection?
    /// The event's unmap ops held against the handles expected to be unmapped.
    let unmaps: UnmapLedger

    /// (The prediction and the world are borrowed: an initializer's arguments
    /// are otherwise its own, and the caller copied the whole prediction for
    /// it, and retained the world only for this to release it.)
    init(environment: EnvironmentRecord, world: borrowing some ObservedWorld,
         reading prediction: borrowing Prediction) {
        // The ledger first, while the record is still the argument: read
        // after the record was moved into `self`, it was copied to be read.
        let batches = environment.unmapBatchCount > 0 ? environment.unmapBatches : []
        if let order = prediction.unmapBatchOrder {
            unmaps = UnmapLedger(expectedInOrder: order, batches: batches)
        } else {
            unmaps = UnmapLedger(expected: prediction.unmaps, batches: batches)
        }
        self.environment = environment
        // Asked directly, not in a closure, which would capture (copy) the borrowed world.
        if let vbd = prediction.connectionVbd { connection = world.connection(vbd: vbd) } else { connection = nil }
    }
}

/// The event's unmap ops, in order, against the handles the reference
/// expected to be unmapped: each expected handle is matched by the first op
/// that unmaps it; every other op is a surprise.
struct UnmapLedger {
    enum Surprise: Hashable {
        /// The hypervisor refused the op, or it unmapped nothing.
        case refused(handle: GrantHandle, status: GrantStatus)
        /// It unmapped a live mapping the event had no reason to unmap.
        case unexpected(handle: GrantHandle, gref: GrantRef)
    }

    /// The surprises, in op order, with the index of the batch each came from.
    private(set) var surprises: [(batch: Int, surprise: Surprise)] = []
    /// Expected handles that no op unmapped.
    private(set) var missing: Set<GrantHandle>

    init(expected: borrowing Set<GrantHandle>, batches: [UnmapBatch]) {
        // The usual event runs no unmap batch: then every expected handle is
        // missing, and there is nothing to go through. (Going through no
        // batches still cost as much as a small batch, on every event.) With
        // none expected either, the set is not even copied: copying the
        // empty one was a retain and, with the ledger, a release per event.
        guard !batches.isEmpty else {
            missing = expected.isEmpty ? [] : copy expected
            return
        }
        missing = copy expected
        for (index, batch) in batches.enumerated() {
            for (op, result) in zip(batch.ops, batch.results) {
                guard result.status == .okay, let mapping = result.unmapped else {
                    surprises.append((index, .refused(handle: op.handle, status: result.status)))
                    continue
                }
                if missing.remove(op.handle) == nil {
                    surprises.append((index, .unexpected(handle: op.handle, gref: mapping.gref)))
                }
            }
        }
    }

    /// G2013: the handles expected as many times as the predicted
    /// hypercalls name them (a handle freed early in an event may be handed
    /// out and unmapped again later in it), each time matched by one op.
    init(expectedInOrder order: [[GrantHandle]], batches: [UnmapBatch]) {
        // Nothing expected and nothing run: nothing to count.
        guard !(order.isEmpty && batches.isEmpty) else {
            missing = []
            return
        }
        var remaining: [GrantHandle: Int] = [:]
        for batch in order { for handle in batch { remaining[handle, default: 0] += 1 } }
        for (index, batch) in batches.enumerated() {
            for (op, result) in zip(batch.ops, batch.results) {
                guard result.status == .okay, let mapping = result.unmapped else {
                    surprises.append((index, .refused(handle: op.handle, status: result.status)))
                    continue
                }
                if let count = remaining[op.handle], count > 0 {
                    remaining[op.handle] = count - 1
                } else {
                    surprises.append((index, .unexpected(handle: op.handle, gref: mapping.gref)))
                }
            }
        }
        missing = Set(remaining.filter { $0.value > 0 }.keys)
    }

    /// An op did something other than an expected unmap: a tree mapping may
    /// be gone though no tree changed.
    var hasSurprises: Bool { !surprises.isEmpty }
}

/// What the backend publishes about one connection's tree.
struct TreeObservation<World: ObservedWorld> {
    let connection: ObservedConnection
    let tree: ObservedTree
    /// Where each node's handle is looked up.
    let world: World
}
