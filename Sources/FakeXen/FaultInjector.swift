import Blkif

/// Deterministic failures, armed by the trace and consumed by the next
/// matching operations. Counting starts at 1: `nth: 1` is the very next one.
public final class FaultInjector {
    private struct Countdown { var remaining: Int; let status: GrantStatus }
    private struct GrefFault { var times: Int; let status: GrantStatus }

    private var mapCountdowns: [Countdown] = []
    private var grefFaults: [GrantRef: [GrefFault]] = [:]
    private var allocCountdowns: [Int] = []
    private var hypercallCountdowns: [Int] = []

    public init() {}

    /// Arming `okay`, or a count below 1, arms nothing: a fault must fail something.
    public func failMap(gref: GrantRef, times: Int, status: GrantStatus) {
        guard times >= 1, status != .okay else { return }
        grefFaults[gref, default: []].append(GrefFault(times: times, status: status))
    }
    public func failMap(nth: Int, status: GrantStatus) {
        guard nth >= 1, status != .okay else { return }
        mapCountdowns.append(Countdown(remaining: nth, status: status))
    }
    public func failAllocation(nth: Int) { if nth >= 1 { allocCountdowns.append(nth) } }
    public func failHypercall(nth: Int) { if nth >= 1 { hypercallCountdowns.append(nth) } }

    /// Called for every map operation actually performed. Every armed fault it
    /// matches is consumed; the first of them (n-th faults before gref faults,
    /// each in the order armed) gives the status.
    func nextMapOperation(gref: GrantRef) -> GrantStatus? {
        var injected: GrantStatus?
        if !mapCountdowns.isEmpty {
            for index in mapCountdowns.indices {
                mapCountdowns[index].remaining -= 1
                if mapCountdowns[index].remaining == 0, injected == nil { injected = mapCountdowns[index].status }
            }
            mapCountdowns.removeAll { $0.remaining <= 0 }
        }
        if !grefFaults.isEmpty, var queue = grefFaults[gref], !queue.isEmpty {
            if injected == nil { injected = queue[0].status }
            queue[0].times -= 1
            if queue[0].times == 0 { queue.removeFirst() }
            grefFaults[gref] = queue.isEmpty ? nil : queue
        }
        return injected
    }

    /// Called for every kernel allocation (record or page); true means ENOMEM.
    func nextAllocationFails() -> Bool { Self.tick(&allocCountdowns) }

    /// Called for every map hypercall; true means it fails as a whole.
    func nextHypercallFails() -> Bool { Self.tick(&hypercallCountdowns) }

    private static func tick(_ countdowns: inout [Int]) -> Bool {
        guard !countdowns.isEmpty else { return false }
        var fired = false
        for index in countdowns.indices {
            countdowns[index] -= 1
            if countdowns[index] == 0 { fired = true }
        }
        countdowns.removeAll { $0 <= 0 }
        return fired
    }

    /// Whether anything is still armed (a trace may arm faults that never fire).
    public var isIdle: Bool {
        mapCountdowns.isEmpty && grefFaults.isEmpty && allocCountdowns.isEmpty && hypercallCountdowns.isEmpty
    }
}
