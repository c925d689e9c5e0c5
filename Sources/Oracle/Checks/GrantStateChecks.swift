import FakeXen
import Trace

extension Checks {
    /// `grant-states` (G2013, G2018): each published grant's ACTIVE and
    /// WAS_ACTIVE flags are the reference's — ACTIVE exactly while a request
    /// uses it, WAS_ACTIVE once put and until the next purge (G2018: never). A flag left set keeps
    /// a grant from ever being purged; one cleared early lets the purge
    /// take a grant a request still uses. Judged for grefs both trees hold
    /// (`tree-contents` reports the others), on a connection in the
    /// negotiated mode, and only where the backend publishes the flags.
    static func grantStates(_ prediction: Prediction, reference: ReferenceModel, in world: some ObservedWorld,
                            into findings: inout [Finding]) {
        for vbd in prediction.grantStates {
            guard let model = reference.connection(vbd), let grants = model.g2013,
                  world.connection(vbd: vbd)?.persistentMode == model.persistentMode,
                  let tree = world.tree(vbd: vbd)
            else { continue }
            var wrong: [String] = []
            for node in tree.nodes {
                guard let flags = node.flags, model.persistentHandle(of: node.gref) != nil else { continue }
                let expected = ObservedGrantFlags(active: grants.isActive(node.gref),
                                                  wasActive: grants.wasActiveSinceLastPurge(node.gref))
                if flags != expected {
                    wrong.append("gref \(node.gref): \(words(flags)), expected \(words(expected))")
                }
            }
            guard !wrong.isEmpty else { continue }
            // G2018 has no WAS_ACTIVE: its grants publish the flag as never set.
            let rule = grants.tracksWasActive ? "WAS_ACTIVE once put until a purge" : "no WAS_ACTIVE (G2018)"
            findings.append(Finding(.grantStates, in: .tree,
                                    expected: "vbd \(vbd): each grant ACTIVE while in use, " + rule,
                                    seen: Wording.list(wrong, limit: 4)))
        }
    }

    private static func words(_ flags: ObservedGrantFlags) -> String {
        switch (flags.active, flags.wasActive) {
        case (false, false): "no flag"
        case (true, false): "ACTIVE"
        case (false, true): "WAS_ACTIVE"
        case (true, true): "ACTIVE|WAS_ACTIVE"
        }
    }
}
