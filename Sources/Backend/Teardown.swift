import Blkif
import FakeXen

extension Blkback {
    /// The teardown at the end of `xen_blkif_schedule`: unmap every persistent
    /// grant in batches of up to 11, erase and free its record and page.
    func freePersistentGrants(_ connection: Connection) throws(KernelPanic) {
        var store = self.store
        var batch: [UnmapOp] = []
        var batchPages: [PageFrame] = []
        var node = connection.tree.first(in: &store)
        // A corrupted tree must not hang the model: a walk visits each record
        // still allocated at most a few times (the limit itself may be huge).
        var budget = (heap.liveCount + max(connection.persistentCount, 0)) * 4 + 64
        while let current = node, budget > 0 {
            budget -= 1
            let record = heap.read(current)
            try xen.kernel.bugOn(record.handle == invalidHandle, "persistent grant \(record.gref) has an invalid handle")
            let page = record.page ?? PageFrame(0)
            batch.append(UnmapOp(hostPage: page, handle: record.handle))
            batchPages.append(page)
            let following: KernelAddress?
            if variant.has(.teardownNextAfterFree) {
                connection.tree.erase(current, in: &store)
                heap.free(current)
                // The seed's loop steps from the node it has just freed.
                following = connection.tree.next(current, in: &store)
            } else {
                following = connection.tree.next(current, in: &store)
                connection.tree.erase(current, in: &store)
                heap.free(current)
            }
            connection.persistentCount -= 1
            connection.treeVersion &+= 1
            if batch.count == Blkif.maxSegmentsPerRequest || following == nil {
                xen.grants.unmap(batch)
                if !variant.has(.teardownKeepsPages) {
                    for page in batchPages { xen.kernel.pages.free(page) }
                }
                batch.removeAll(keepingCapacity: true)
                batchPages.removeAll(keepingCapacity: true)
            }
            node = following
        }
        try xen.kernel.bugOn(connection.persistentCount != 0, "persistent_gnt_c is \(connection.persistentCount) after teardown")
        try xen.kernel.bugOn(!connection.tree.isEmpty, "the persistent grant tree is not empty after teardown")
    }
}
