import Foundation
import Harness

/// Replays files on several threads; results come back in file order.
enum ParallelReplay {
    static func run(files: [String], jobs: Int, failFast: Bool,
                    _ replay: @escaping @Sendable (String) -> ReplayReport) -> [ReplayReport] {
        let results = ResultSlots(count: files.count)
        let queue = DispatchQueue(label: "replay", attributes: .concurrent)
        let group = DispatchGroup()
        let semaphore = DispatchSemaphore(value: jobs)
        for (index, file) in files.enumerated() {
            semaphore.wait()
            if failFast && results.sawFailure { semaphore.signal(); break }
            group.enter()
            queue.async {
                let report = replay(file)
                results.store(report, at: index)
                semaphore.signal()
                group.leave()
            }
        }
        group.wait()
        return results.collected
    }
}

/// Thread-safe result array for the replay workers.
final class ResultSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [ReplayReport?]
    private var failed = false

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func store(_ report: ReplayReport, at index: Int) {
        lock.lock()
        defer { lock.unlock() }
        slots[index] = report
        if report.verdict != .pass { failed = true }
    }

    var sawFailure: Bool {
        lock.lock()
        defer { lock.unlock() }
        return failed
    }

    var collected: [ReplayReport] {
        lock.lock()
        defer { lock.unlock() }
        return slots.compactMap { $0 }
    }
}
