import Blkif
import FakeXen
import Trace

/// Counts that show what persistent grants buy: hits instead of map/unmap pairs.
public struct OracleStatistics: Hashable, Sendable {
    public var persistentHits = 0
    public var newPersistent = 0
    public var oneOff = 0
    /// One-off segments caused only by the persistent limit.
    public var overflowed = 0
    public init() {}
}

/// The independent judge: its own model of what docs/design.md §6 requires, checked
/// against what the environment observed and the backend published after
/// every event. It never calls into the backend.
///
/// Each event is judged in two steps: the reference model predicts what the
/// event must do (`Prediction`), then each check holds one part of that
/// against what was observed (`Checks`).
public final class ConformanceOracle {
    // Unchecked exclusivity: private to this final class and reached only by
    // `check` (one mutating access per event) and the `statistics` getter.
    // During `check` the judge calls out only to the world it is handed, and
    // no world can reach this object (the harness's world is the fake
    // environment and the backend, which never see the oracle). So no two
    // accesses can overlap; the runtime check was a begin and an end call
    // on every event.
    @exclusivity(unchecked) private var judge: EventJudge

    public var statistics: OracleStatistics { judge.predictor.reference.statistics }

    /// An oracle predicting by the reference semantics of `generation`.
    public init(generation: OracleGeneration = .g2012) {
        judge = EventJudge(reference: ReferenceModel(generation: generation))
    }

    /// Judges one event after the harness has applied it.
    /// `environment` is taken over (`consuming`): the caller has no more use
    /// for the event's log, and handing it over spares a retain and a release.
    public func check(_ event: TraceEventKind, at position: TracePosition, environment: consuming [Observation],
                      publications: [Publication], world: some ObservedWorld) -> [Violation] {
        judge.check(event, at: position, environment: consume environment, publications: publications, world: world)
    }
}

/// The oracle's state across events and its judgement of one: the
/// predictor (the reference with its reusable prediction) and the memos.
/// A value the oracle accesses once per event, so the prediction is read
/// in place by every check, never copied or moved out and back.
struct EventJudge {
    var predictor: Predictor
    var treeMemo = TreeCheckMemo()
    var leakMemo = LeakCheckMemo()

    init(reference: ReferenceModel) {
        predictor = Predictor(reference: reference)
    }

    mutating func check(_ event: TraceEventKind, at position: TracePosition, environment: consuming [Observation],
                        publications: [Publication], world: some ObservedWorld) -> [Violation] {
        let record = EnvironmentRecord(consume environment)
        var findings: [Finding] = []
        // Each alarm check finds nothing on an event that logged no alarm;
        // asked once here, the usual event makes none of the six calls.
        if record.hasAlarms {
            Checks.useAfterFree(record, into: &findings)
            Checks.doubleFree(record, into: &findings)
            Checks.panic(record, into: &findings)
            Checks.accessUnmapped(record, into: &findings)
            Checks.unmapInUse(record, into: &findings)
            Checks.hostLeak(record, into: &findings)
        }
        // Judged from the log alone, like the alarms, and before a panic
        // ends the event's judgement: what was read had been read.
        if record.readGuestBytes { Checks.doubleFetch(record, into: &findings) }
        // A panic is the host going down: nothing after it in this event means
        // anything, and the reference does not take the event in. What its
        // batches did is never judged, so no memo may vouch for it.
        if record.panicked {
            leakMemo.forget()
            return Self.violations(findings, at: position)
        }

        if let run = predictor.reference.g2013 {
            predictor.predictG2013(event, environment: record, world: world, run: run)
        } else {
            predictor.predict(event, environment: record, world: world)
        }
        Self.judge(predictor.prediction, reference: predictor.reference, environment: consume record,
                   publications: publications, in: world, treeMemo: &treeMemo, leakMemo: &leakMemo, findings: &findings)
        return Self.violations(findings, at: position)
    }

    /// Holds the event's prediction against what was observed. One call with
    /// the prediction, rather than one per check, so it is handed over once.
    /// The observation is made here, from the prediction as this call holds
    /// it: made by the caller, from the prediction inside `self`, it took a
    /// copy of the whole prediction (209 bytes) of its own.
    private static func judge(_ prediction: Prediction, reference: ReferenceModel,
                              environment: consuming EnvironmentRecord, publications: [Publication],
                              in world: some ObservedWorld, treeMemo: inout TreeCheckMemo,
                              leakMemo: inout LeakCheckMemo, findings: inout [Finding]) {
        let observed = EventObservation(environment: consume environment, world: world, reading: prediction)
        reference.settle(prediction.alerts, seen: observed.environment.alerts)
        if let vbd = prediction.negotiation?.vbd ?? prediction.teardown?.vbd { treeMemo.forget(vbd: vbd) }
        // Each finding carries its place in the report (`ReportSection`); the
        // order of these calls matters only within one section.
        Checks.negotiation(prediction, observed, published: publications, in: world, into: &findings)
        Checks.mapOps(prediction, observed, into: &findings)
        Checks.overflowAlert(prediction, observed, into: &findings)
        Checks.response(prediction, published: publications, into: &findings)
        Checks.responseSlot(observed.environment, into: &findings)
        Checks.unmapBitmap(prediction, published: publications, into: &findings)
        Checks.unmapOps(prediction, observed, batchLimit: reference.unmapBatchLimit, into: &findings)
        Checks.teardown(prediction, observed, in: world, into: &findings)
        Checks.data(prediction, in: world, into: &findings)
        Checks.requestLeak(prediction, observed.environment, in: world, memo: &leakMemo, into: &findings)
        treeFindings(prediction, observed, in: world, memo: &treeMemo, into: &findings)
        if !prediction.grantStates.isEmpty { Checks.grantStates(prediction, reference: reference, in: world, into: &findings) }
    }

    /// The tree checks, for the tree a connect or request may have changed.
    /// (Static, with its memo passed in: a mutating method handed a prediction
    /// held in `self` made the caller copy the prediction.)
    private static func treeFindings(_ prediction: Prediction, _ observed: EventObservation,
                                     in world: some ObservedWorld, memo treeMemo: inout TreeCheckMemo,
                                     into findings: inout [Finding]) {
        guard let expected = prediction.tree, let connection = observed.connection,
              // A mode other than the negotiated one is reported at connect.
              connection.persistentMode == expected.persistentMode,
              treeMemo.needsCheck(vbd: expected.vbd, referenceVersion: expected.version,
                                  observedVersion: connection.treeVersion,
                                  afterUnexpectedUnmaps: observed.unmaps.hasSurprises),
              let tree = world.tree(vbd: expected.vbd)
        else { return }
        let seen = TreeObservation(connection: connection, tree: tree, world: world)
        Checks.treeCount(expected, seen, into: &findings)
        Checks.grantLimit(expected, seen, into: &findings)
        Checks.treeOrder(expected, seen, into: &findings)
        Checks.treeBalance(expected, seen, into: &findings)
        Checks.treeContents(expected, seen, into: &findings)
        Checks.treeMapping(expected, seen, into: &findings)
    }

    private static func violations(_ findings: [Finding], at position: TracePosition) -> [Violation] {
        // The usual event finds nothing: no sorting or mapping to do.
        guard !findings.isEmpty else { return [] }
        return ReportSection.reportOrder(findings).map {
            Violation(check: $0.check, position: position, expected: $0.expected, seen: $0.seen)
        }
    }
}
