import Blkif
import FakeXen

extension Blkback {
    /// The teardown at the end of `xen_blkif_schedule`: unmap every persistent
    /// grant in batches of up to 11, erase and free its record and page.
    ///
    /// `tree` is the connection's, reached in place for the whole teardown
    /// (one access, not one per record).
    func freePersistentGrants(in tree: inout PersistentGrantTree) throws(KernelPanic) {
        var batch: [UnmapOp] = []
        var batchPages: [PageFrame] = []
        batch.reserveCapacity(Blkif.maxSegmentsPerRequest)
        batchPages.reserveCapacity(Blkif.maxSegmentsPerRequest)
        let stepsFromFreed = variant.has(.teardownNextAfterFree)
        let keepsPages = variant.has(.teardownKeepsPages)
        var node = tree.first()
        // A corrupted tree must not hang the model: a walk visits each record
        // still allocated at most a few times (the limit itself may be huge).
        var budget = (heap.liveCount + max(tree.count, 0)) * 4 + 64
        while let current = node, budget > 0 {
            budget -= 1
            let record = heap.read(current)
            try xen.kernel.bugOn(record.handle == invalidHandle, "persistent grant \(record.gref) has an invalid handle")
            let page = record.page ?? PageFrame(0)
            batch.append(UnmapOp(hostPage: page, handle: record.handle))
            batchPages.append(page)
            let following: KernelAddress?
            if stepsFromFreed {
                tree.erase(current)
                heap.free(current)
                // The seed's loop steps from the node it has just freed.
                following = tree.next(after: current)
            } else {
                following = tree.next(after: current)
                tree.erase(current)
                heap.free(current)
            }
            if batch.count == Blkif.maxSegmentsPerRequest || following == nil {
                xen.grants.unmap(batch)
                if !keepsPages {
                    for page in batchPages { xen.kernel.pages.free(page) }
                }
                batch.removeAll(keepingCapacity: true)
                batchPages.removeAll(keepingCapacity: true)
            }
            node = following
        }
        try xen.kernel.bugOn(tree.count != 0, "persistent_gnt_c is \(tree.count) after teardown")
        try xen.kernel.bugOn(!tree.isEmpty, "the persistent grant tree is not empty after teardown")
    }
}
