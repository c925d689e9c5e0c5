import Seeded
import Testing
import Blkif
import FakeXen
import Backend


/// A long random life of one frontend against the fixed backend: random
/// grants from a small pool, reads and writes of 1–11 segments, a small and
/// changing persistent limit, injected map/alloc/hypercall failures, held
/// requests completed in random order, revokes and reconnects. Every step is
/// checked; data is checked against a shadow of the disk and guest memory.
///
/// It judges whole runs, much as the oracle does (negotiation, the tree's count,
/// limit and mappings, data, responses, leftovers): it belongs in HarnessTests,
/// where the real oracle can judge these lives, and its own checks can go.
final class RandomRun {
    struct Pending {
        let op: BlkifOperation
        let sector: UInt64
        let segments: [BlkifSegment]
        let discardCount: UInt64
    }

    struct Coverage {
        var requests = 0, okay = 0, errors = 0, persistentHits = 0, duplicates = 0, overflowAlerts = 0
        var mapFailures = 0, allocationFailures = 0, hypercallFailures = 0, heldCompletedOutOfOrder = 0
        var revokesRefused = 0, revokesAccepted = 0, connects = 0, nonPersistentConnects = 0, drainedAtDisconnect = 0
        var maxInFlight = 0, maxTree = 0
    }

    let seed: UInt64
    let steps: Int
    private var rng: SplitMix64
    let d: Driver
    private(set) var failures: [String] = []
    private(set) var coverage = Coverage()
    private var stepIndex = 0
    private var reportedFindings = 0

    private let hot: [GrantRef]
    private let pool: [GrantRef]
    private let neverGranted: GrantRef = 99
    private var granted: [GrantRef: Bool] = [:]          // live grants: gref → read-only

    private var diskSectors: UInt64 = 256
    private var flush = true
    private var discard = false
    private var held: [UInt64: Pending] = [:]
    private var heldOrder: [UInt64] = []
    private var submitted: Set<UInt64> = []
    private var nextID: UInt64 = 1
    private var nextToken: UInt64

    private var shadowDisk: [UInt64: UInt64] = [:]
    private var shadowGuest: [GuestPage: [UInt64]] = [:]
    private var touchedGuest: [(GuestPage, Int)] = []
    private var touchedDisk: [UInt64] = []

    /// `poolSize` grefs, the first sixth of them (at least 5) hot.
    init(seed: UInt64, steps: Int, variant: BackendVariant = .fixed, poolSize: Int = 14) {
        d = Driver(variant, domid: 9, vbd: 3)
        pool = (1...poolSize).map { GrantRef($0) }
        hot = Array(pool.prefix(max(5, poolSize / 6)))
        self.seed = seed
        self.steps = steps
        rng = SplitMix64(seed: seed)
        nextToken = (seed & 0xFFFF) << 40 | 1
    }

    private func fail(_ message: String) {
        failures.append("seed \(seed), step \(stepIndex): \(message)")
    }

    private func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &rng) < percent }
    private func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &rng)] }

    // MARK: the run

    func run() {
        for gref in pool where chance(80) { grant(gref, readOnly: false) }
        connect()
        while stepIndex < steps && failures.isEmpty {
            stepIndex += 1
            act()
            verify()
        }
        guard failures.isEmpty else { return }
        stepIndex += 1
        disconnect()
        verify()
        for id in submitted where d.responseCount[id] != 1 {
            fail("request \(id) answered \(d.responseCount[id] ?? 0) times")
        }
        for id in d.responseCount.keys where !submitted.contains(id) { fail("response for unknown id \(id)") }
        if !d.liveMappings.isEmpty { fail("still mapped at the end: \(d.liveMappings)") }
        if !d.liveAllocations.isEmpty { fail("still allocated at the end: \(d.liveAllocations)") }
        if d.backend.panic != nil { fail("panic: \(d.backend.panic!)") }
    }

    private func act() {
        let roll = Int.random(in: 0..<100, using: &rng)
        switch roll {
        case 0..<52: submitReadWrite()
        case 52..<63: if !completeRandom() { submitReadWrite() }
        case 63..<66: revokeRandom()
        case 66..<72: grantRandom()
        case 72..<80: armFault()
        case 80..<82: reconnect()
        case 82..<91: submitFlushBarrierOrDiscard()
        default: submitInvalid()
        }
    }

    // MARK: connection

    private func connect() {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0..<6: d.frontendKey("feature-persistent", "1")
        case 6: d.frontendKey("feature-persistent", "0")
        case 7: d.clearFrontendKeys()
        case 8: d.frontendKey("feature-persistent", "2")
        default:
            d.clearFrontendKeys()
            d.frontendKey("feature-persistent-grants", "1")
        }
        let offers = chance(85)
        let limit = pick([1, 2, 3, 4, 6, 8, 12, nil] as [Int?])
        let proto = pick(BlkifProtocol.allCases)
        diskSectors = pick([128, 256, 1024] as [UInt64])
        flush = chance(80)
        discard = chance(40)
        shadowDisk = [:]
        let expected = offers && d.xen.xenstore.readUnsigned(d.frontendDirectory + "/feature-persistent") == 1
        let step = d.connect(persistent: nil, offers: offers, maxPersistent: limit, proto: proto, sectors: diskSectors,
                             flush: flush, discard: discard)
        coverage.connects += 1
        if step.negotiated != true { coverage.nonPersistentConnects += 1 }
        if !d.isConnected { fail("not connected after connect") }
        if let negotiated = step.negotiated, negotiated != expected {
            fail("published persistent=\(negotiated), expected \(expected)")
        }
        if let mode = d.snapshot?.persistentMode, mode != expected {
            fail("snapshot persistentMode=\(mode), expected \(expected)")
        }
    }

    private func disconnect() {
        let step = d.disconnect()
        let ids = step.responses.map(\.id)
        if ids != heldOrder { fail("disconnect answered \(ids), in flight were \(heldOrder)") }
        coverage.drainedAtDisconnect += ids.count
        applyCompletions(step)
        held = [:]
        heldOrder = []
        verifyData()
        if d.isConnected { fail("still connected after disconnect") }
        if !d.liveMappings.isEmpty { fail("mapped after disconnect: \(d.liveMappings)") }
        if !d.liveAllocations.isEmpty { fail("allocated after disconnect: \(d.liveAllocations)") }
    }

    private func reconnect() {
        disconnect()
        connect()
    }

    // MARK: guest

    private func grant(_ gref: GrantRef, readOnly: Bool) {
        d.grant(gref, readOnly: readOnly)
        granted[gref] = readOnly
    }

    private func grantRandom() { grant(pick(pool), readOnly: chance(8)) }

    private func revokeRandom() {
        let gref = pick(pool)
        let inTree = d.treeGrefs.contains(gref)
        let inFlight = held.values.contains { $0.segments.contains { $0.gref == gref } }
        let accepted = d.revoke(gref)
        if accepted && (inTree || inFlight) {
            fail("revoke of gref \(gref) accepted though the backend maps it (tree \(inTree), in flight \(inFlight))")
        }
        if !accepted && !inTree && !inFlight {
            fail("revoke of gref \(gref) refused though neither the tree nor an in-flight request uses it: \(d.liveMappings.filter { $0.gref == gref })")
        }
        if accepted { granted[gref] = nil; coverage.revokesAccepted += 1 } else { coverage.revokesRefused += 1 }
    }

    private func armFault() {
        let statuses = GrantStatus.allCases.filter { $0 != .okay }
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: d.xen.faults.failMap(gref: chance(70) ? pick(hot) : pick(pool), times: Int.random(in: 1...2, using: &rng), status: pick(statuses))
        case 1: d.xen.faults.failMap(nth: Int.random(in: 1...8, using: &rng), status: pick(statuses))
        case 2: d.xen.faults.failAllocation(nth: Int.random(in: 1...6, using: &rng))
        default: d.xen.faults.failHypercall(nth: Int.random(in: 1...3, using: &rng))
        }
    }

    // MARK: requests

    /// Mostly grefs the guest has granted writable (hot ones first, so
    /// reuse and duplicates are common), sometimes any of the pool, rarely
    /// one never granted.
    private func randomSegments(count: Int) -> [BlkifSegment] {
        let usable = pool.filter { granted[$0] == false }
        let usableHot = hot.filter { granted[$0] == false }
        return (0..<count).map { _ in
            let roll = Int.random(in: 0..<1000, using: &rng)
            let gref: GrantRef
            if roll < 600 && !usableHot.isEmpty {
                gref = pick(usableHot)
            } else if roll < 975 && !usable.isEmpty {
                gref = pick(usable)
            } else if roll < 995 {
                gref = pick(pool)
            } else {
                gref = neverGranted
            }
            let first = UInt8.random(in: 0...7, using: &rng)
            return seg(gref, first, UInt8.random(in: first...7, using: &rng))
        }
    }

    private func sectors(_ segments: [BlkifSegment]) -> UInt64 { UInt64(segments.reduce(0) { $0 + $1.sectorCount }) }

    private func freshID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }

    private func mayHold() -> Bool { heldOrder.count < 32 && chance(45) }

    /// Whether the fixed backend must answer okay: no fault armed, every gref granted writable.
    private func mustSucceed(_ segments: [BlkifSegment]) -> Bool {
        d.xen.faults.isIdle && segments.allSatisfy { granted[$0.gref] == false }
    }

    private func stampForWrite(_ segments: [BlkifSegment]) {
        for segment in segments {
            guard let page = d.guestPage(segment.gref) else { continue }
            for sector in Int(segment.firstSect)...Int(segment.lastSect) {
                let token = nextToken
                nextToken += 1
                d.xen.memory.setToken(page, sector: sector, token)
                shadowGuest[page, default: Array(repeating: 0, count: Blkif.sectorsPerPage)][sector] = token
            }
        }
    }

    private func submitReadWrite() {
        let op: BlkifOperation = chance(50) ? .write : .read
        let segments = randomSegments(count: Int.random(in: 1...11, using: &rng))
        let sector = UInt64.random(in: 0...(diskSectors - sectors(segments)), using: &rng)
        submitData(op, sector: sector, segments)
    }

    private func submitData(_ op: BlkifOperation, sector: UInt64, _ segments: [BlkifSegment]) {
        let id = freshID()
        let hold = mayHold()
        let flushLike = op == .flushDiskcache || op == .writeBarrier
        let expected: BlkifResponseStatus? = flushLike && !flush ? .eopnotsupp : mustSucceed(segments) ? .okay : nil
        if op != .read { stampForWrite(segments) }
        if Set(segments.map(\.gref)).count < segments.count { coverage.duplicates += 1 }
        let treeBefore = Set(d.treeGrefs)
        let pending = Pending(op: op, sector: sector, segments: segments, discardCount: 0)
        let step = d.request(BlkifRequest(operation: op.rawValue, id: id, sectorNumber: sector, segments: segments), hold: hold)
        coverage.requests += 1
        coverage.overflowAlerts += step.alerts.count
        coverage.allocationFailures += step.allocationFailures
        for batch in step.mapBatches {
            if let results = batch.results {
                coverage.mapFailures += results.filter { $0.status != .okay }.count
            } else {
                coverage.hypercallFailures += 1
            }
            if batch.ops.count > Blkif.maxSegmentsPerRequest { fail("a map batch of \(batch.ops.count) ops") }
        }
        if step.mapBatches.count > 1 { fail("request \(id) issued \(step.mapBatches.count) map hypercalls") }
        // A segment that hit the tree must not be mapped again.
        let hits = segments.filter { treeBefore.contains($0.gref) }.map(\.gref)
        if let again = step.mapOps.first(where: { hits.contains($0.gref) }) {
            fail("request \(id): gref \(again.gref) is in the tree but was mapped again")
        }
        if !segments.isEmpty && step.mapBatches.isEmpty && segments.allSatisfy({ treeBefore.contains($0.gref) }) {
            coverage.persistentHits += 1
        }
        handleSubmission(step, id: id, pending: pending, hold: hold, expected: expected)
    }

    private func handleSubmission(_ step: Step, id: UInt64, pending: Pending, hold: Bool,
                                  expected: BlkifResponseStatus?) {
        submitted.insert(id)
        let others = step.responses.filter { $0.id != id }
        if !others.isEmpty { fail("request \(id) brought responses for \(others.map(\.id))") }
        guard let status = step.status(id: id) else {
            if !hold { fail("request \(id) was not answered") }
            held[id] = pending
            heldOrder.append(id)
            coverage.maxInFlight = max(coverage.maxInFlight, heldOrder.count)
            if let expected, expected != .okay { fail("request \(id) should have been answered \(expected) at once") }
            return
        }
        if let expected, status != expected { fail("request \(id) (\(pending.op), \(pending.segments)) answered \(status), expected \(expected)") }
        if status == .okay {
            coverage.okay += 1
            if hold { fail("held request \(id) answered before completion") }
            apply(pending)
        } else {
            coverage.errors += 1
        }
    }

    private func completeRandom() -> Bool {
        guard !heldOrder.isEmpty else { return false }
        let index = Int.random(in: 0..<heldOrder.count, using: &rng)
        let id = heldOrder[index]
        if index > 0 { coverage.heldCompletedOutOfOrder += 1 }
        let step = d.complete(id: id)
        if step.responses.map(\.id) != [id] || step.status(id: id) != .okay {
            fail("completing \(id) answered \(step.responses)")
        }
        applyCompletions(step)
        heldOrder.remove(at: index)
        held[id] = nil
        return true
    }

    private func applyCompletions(_ step: Step) {
        for response in step.responses {
            guard let pending = held[response.id] else { continue }
            if response.status != BlkifResponseStatus.okay.rawValue { fail("held request \(response.id) answered \(response.status)") }
            apply(pending)
        }
    }

    private func submitFlushBarrierOrDiscard() {
        switch Int.random(in: 0..<3, using: &rng) {
        case 0:
            submitData(.flushDiskcache, sector: 0, [])
        case 1:
            let segments = randomSegments(count: Int.random(in: 1...4, using: &rng))
            let sector = UInt64.random(in: 0...(diskSectors - sectors(segments)), using: &rng)
            submitData(chance(50) ? .writeBarrier : .flushDiskcache, sector: sector, segments)
        default:
            let count = UInt64.random(in: 1...16, using: &rng)
            let sector = UInt64.random(in: 0...(diskSectors - 8), using: &rng)
            let id = freshID()
            let expected: BlkifResponseStatus = !discard ? .eopnotsupp : sector + count > diskSectors ? .error : .okay
            let step = d.discard(id: id, sector: sector, count: count)
            submitted.insert(id)
            if step.status(id: id) != expected { fail("discard \(id) answered \(String(describing: step.status(id: id))), expected \(expected)") }
            if !step.mapBatches.isEmpty { fail("discard \(id) mapped grants") }
            if step.status(id: id) == .okay {
                apply(Pending(op: .discard, sector: sector, segments: [], discardCount: count))
            }
        }
    }

    private func submitInvalid() {
        let id = freshID()
        var segments = randomSegments(count: Int.random(in: 1...11, using: &rng))
        var op: UInt8 = chance(50) ? BlkifOperation.write.rawValue : BlkifOperation.read.rawValue
        var nr: UInt8? = nil
        var sector = UInt64.random(in: 0...(diskSectors - sectors(segments)), using: &rng)
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: nr = 0
        case 1:
            segments = randomSegments(count: 11)
            sector = 0
            nr = UInt8.random(in: 12...255, using: &rng)
        case 2:
            let index = Int.random(in: 0..<segments.count, using: &rng)
            segments[index].lastSect = UInt8.random(in: 8...255, using: &rng)
        case 3:
            let index = Int.random(in: 0..<segments.count, using: &rng)
            segments[index].firstSect = UInt8.random(in: 1...7, using: &rng)
            segments[index].lastSect = UInt8.random(in: 0..<segments[index].firstSect, using: &rng)
        case 4:
            sector = diskSectors - sectors(segments) + UInt64.random(in: 1...64, using: &rng)
        default:
            op = pick([4, 6, 7, 8, 100, 255])
        }
        let version = d.snapshot?.treeVersion
        let allocations = d.liveAllocations.count
        let step = d.request(BlkifRequest(operation: op, nrSegments: nr, id: id, sectorNumber: sector, segments: segments))
        submitted.insert(id)
        if step.status(id: id) != .error { fail("invalid request \(id) answered \(String(describing: step.status(id: id)))") }
        if !step.mapBatches.isEmpty || step.allocationFailures > 0 { fail("invalid request \(id) mapped or allocated") }
        if d.snapshot?.treeVersion != version || d.liveAllocations.count != allocations {
            fail("invalid request \(id) changed the tree or allocations")
        }
    }

    // MARK: the shadow

    private func apply(_ pending: Pending) {
        var sector = pending.sector
        if pending.op == .discard {
            for s in sector..<(sector + pending.discardCount) {
                shadowDisk[s] = nil
                touchedDisk.append(s)
            }
            return
        }
        for segment in pending.segments {
            guard let page = d.guestPage(segment.gref) else {
                fail("gref \(segment.gref) of a served request has no page")
                return
            }
            for pageSector in Int(segment.firstSect)...Int(segment.lastSect) {
                if pending.op == .read {
                    shadowGuest[page, default: Array(repeating: 0, count: Blkif.sectorsPerPage)][pageSector] =
                        shadowDisk[sector] ?? Ramdisk.initialToken(sector: sector)
                    touchedGuest.append((page, pageSector))
                } else {
                    shadowDisk[sector] = shadowGuest[page]?[pageSector] ?? 0
                    touchedDisk.append(sector)
                }
                sector += 1
            }
        }
    }

    private func verifyData() {
        defer { touchedGuest.removeAll(keepingCapacity: true); touchedDisk.removeAll(keepingCapacity: true) }
        for (page, sector) in touchedGuest {
            let want = shadowGuest[page]?[sector] ?? 0
            let have = d.xen.memory.token(page, sector: sector)
            if want != have { fail("data: \(page) sector \(sector) holds \(have), expected \(want)"); return }
        }
        guard let disk = d.xen.device(vbd: d.vbd)?.disk else { return }
        for sector in touchedDisk {
            let want = shadowDisk[sector] ?? Ramdisk.initialToken(sector: sector)
            if disk.token(at: sector) != want { fail("data: disk sector \(sector) holds \(disk.token(at: sector)), expected \(want)"); return }
        }
    }

    // MARK: checks after every step

    private func verify() {
        if d.findings.count > reportedFindings {
            for finding in d.findings[reportedFindings...] { fail("\(finding)") }
            reportedFindings = d.findings.count
        }
        if let panic = d.backend.panic { fail("panic: \(panic)"); return }
        verifyData()
        guard d.isConnected, let snapshot = d.snapshot, let tree = d.tree else { return }
        coverage.maxTree = max(coverage.maxTree, tree.nodes.count)
        if snapshot.persistentCount != tree.nodes.count {
            fail("count \(snapshot.persistentCount) but \(tree.nodes.count) nodes")
        }
        if tree.nodes.count > snapshot.maxPersistent {
            fail("\(tree.nodes.count) nodes over the limit \(snapshot.maxPersistent)")
        }
        if Set(tree.nodes.map(\.handle)).count != tree.nodes.count { fail("two tree records share a handle") }
        if let record = d.wronglyMappedTreeRecords.first {
            fail("gref \(record.gref): handle \(record.handle) is not a live writable mapping of it"
                 + " at \(String(describing: record.page))")
        }
        let inFlight = snapshot.inFlight.map(\.id)
        if Set(inFlight) != Set(heldOrder) || inFlight.count != heldOrder.count {
            fail("in flight \(inFlight), expected \(heldOrder)")
        }
        // After completion only tree grants stay mapped; in-flight requests hold their one-off maps.
        let oneOff = snapshot.inFlight.reduce(0) { $0 + $1.bitmap.nonzeroBitCount }
        if d.liveMappings.count != tree.nodes.count + oneOff {
            fail("\(d.liveMappings.count) live mappings, expected \(tree.nodes.count) persistent + \(oneOff) in flight")
        }
        for request in snapshot.inFlight where request.bitmap >> (held[request.id]?.segments.count ?? 0) != 0 {
            fail("request \(request.id): unmap bitmap \(String(request.bitmap, radix: 2)) has bits past its segments")
        }
        if d.liveAllocations.count != 2 * tree.nodes.count {
            fail("\(d.liveAllocations.count) allocations for \(tree.nodes.count) persistent grants")
        }
        if snapshot.persistentMode == false && !tree.nodes.isEmpty { fail("a tree without persistent mode") }
    }
}

@Suite struct RandomScenarioTests {
    /// The last seed uses a larger pool, so that trees grow and shrink more.
    @Test(arguments: [(0x5EED_0001, 14), (0x5EED_0002, 14), (0x5EED_0003, 14), (0x5EED_0004, 120)] as [(UInt64, Int)])
    func theFixedBackendStaysClean(seed: UInt64, poolSize: Int) {
        let run = RandomRun(seed: seed, steps: 3000, poolSize: poolSize)
        run.run()
        #expect(run.failures.isEmpty, "\(run.failures.prefix(5).joined(separator: "\n"))")
        guard run.failures.isEmpty else { return }
        // The run must have exercised what it is about.
        let c = run.coverage
        let seen: [(String, Int)] = [
            ("okay responses", c.okay), ("error responses", c.errors), ("persistent hits", c.persistentHits),
            ("duplicate grefs", c.duplicates), ("overflow alerts", c.overflowAlerts), ("map failures", c.mapFailures),
            ("allocation failures", c.allocationFailures), ("hypercall failures", c.hypercallFailures),
            ("out-of-order completions", c.heldCompletedOutOfOrder), ("refused revokes", c.revokesRefused),
            ("accepted revokes", c.revokesAccepted), ("non-persistent connects", c.nonPersistentConnects),
            ("requests drained at disconnect", c.drainedAtDisconnect),
        ]
        for (what, count) in seen { #expect(count > 0, "seed \(seed): no \(what) in \(c)") }
        #expect(c.connects > 5, "seed \(seed): \(c)")
        #expect(c.maxInFlight >= 8, "seed \(seed): \(c)")
    }

    /// The same checks catch every one of the seed's quirks within a short run.
    @Test(arguments: Generation.g2012.quirks)
    func theChecksCatchEachQuirk(quirk: Quirk) {
        let caught = [UInt64(0x5EED_0001), 0x5EED_0002].map { seed in
            let run = RandomRun(seed: seed, steps: 3000, variant: BackendVariant(quirks: [quirk]))
            run.run()
            return run.failures.first
        }
        #expect(caught.allSatisfy { $0 != nil }, "\(quirk.rawValue) went unnoticed")
    }
}
