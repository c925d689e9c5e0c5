import Testing
import Blkif
import FakeXen
@_spi(Testing) import Backend

/// `publishedTree` takes a one-walk path when the tree is sound and the
/// careful walk otherwise; the fast path must publish exactly what the careful
/// walk would, and must give way whenever the tree is not sound. Both are
/// compared after every step of every quirk scenario and of random lives under
/// every backend, where trees are built, demoted, freed and torn down. (No
/// quirk leaves a tree the one walk refuses after a step: a link into freed
/// memory or a cycle needs a corrupted heap, which these lives never make.)
@Suite struct PublishedTreeWalkTests {
    /// What the comparison saw, so a run that never reached one of the two paths fails.
    final class Tally {
        var sound = 0, unsound = 0
        var disagreements: [String] = []

        func watch(_ d: Driver, label: String) {
            d.afterEveryStep = { [self] d, _ in
                guard let careful = d.backend.publishedTreeByCarefulWalk(vbd: d.vbd) else { return }
                if let oneWalk = d.backend.publishedTreeByOneWalk(vbd: d.vbd) {
                    sound += 1
                    if oneWalk != careful { disagreements.append("\(label), step \(d.stepCount): \(oneWalk) vs \(careful)") }
                } else {
                    unsound += 1
                    if careful.brokenLinks.isEmpty && careful.shapeProblems.isEmpty {
                        disagreements.append("\(label), step \(d.stepCount): one walk refused a sound tree \(careful)")
                    }
                }
                if d.backend.publishedTree(vbd: d.vbd) != careful {
                    disagreements.append("\(label), step \(d.stepCount): publishedTree differs from the careful walk")
                }
            }
        }
    }

    @Test func quirkScenariosPublishTheSameTreeBothWays() {
        let tally = Tally()
        for scenario in QuirkScenario.all {
            for variant in [BackendVariant.fixed, BackendVariant(quirks: [scenario.quirk])] {
                let d = Driver(variant)
                tally.watch(d, label: "\(variant.name): \(scenario.name)")
                scenario.run(d)
            }
        }
        #expect(tally.disagreements.isEmpty, "\(tally.disagreements.prefix(5))")
        #expect(tally.sound > 0)
    }

    @Test(arguments: [BackendVariant.fixed] + Generation.g2012.quirks.map { BackendVariant(quirks: [$0]) })
    func randomLivesPublishTheSameTreeBothWays(variant: BackendVariant) {
        let tally = Tally()
        for seed in UInt64(1)...4 {
            let run = RandomRun(seed: 0x7EE5_0000 + seed, steps: 300, variant: variant)
            tally.watch(run.d, label: "\(variant.name) seed \(seed)")
            run.run()
        }
        #expect(tally.disagreements.isEmpty, "\(tally.disagreements.prefix(5))")
        #expect(tally.sound > 0)
    }

    /// A tree linked into freed memory: the one walk gives way and what is
    /// published is the careful walk's, naming the broken link.
    @Test func aTreeLinkedIntoFreedMemoryIsPublishedByTheCarefulWalk() {
        let d = Driver(.fixed)
        d.grant(1, 2, 3, 4, 5)
        d.connect()
        _ = d.read(id: 1, [seg(1), seg(2), seg(3), seg(4), seg(5)])
        #expect(d.backend.publishedTreeByOneWalk(vbd: d.vbd)?.nodes.count == 5)
        d.backend.freeTreeRootBehindTheTreesBack(vbd: d.vbd)
        #expect(d.backend.publishedTreeByOneWalk(vbd: d.vbd) == nil)
        let careful = d.backend.publishedTreeByCarefulWalk(vbd: d.vbd)
        #expect(careful?.brokenLinks.isEmpty == false)
        #expect(d.backend.publishedTree(vbd: d.vbd) == careful)
    }
}
