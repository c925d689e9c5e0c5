import Testing
import Blkif
@testable import FakeXen

@Suite struct BlockDeviceTests {
    /// A disk, one granted guest page per gref and host pages to map them into.
    private struct Rig {
        let xen = FakeXen()
        let device: BlockDevice
        let pages: [PageFrame]

        init(grefs: [GrantRef] = [1, 2, 3], readOnly: Bool = false) {
            device = xen.attachDisk(vbd: 0, sectors: 64)
            pages = xen.kernel.pages.reserve(count: 4)
            for gref in grefs { xen.grants.grant(domid: guest, gref: gref, readOnly: readOnly) }
        }

        func guestPage(_ gref: GrantRef) -> GuestPage { xen.grants.guestPage(domid: guest, gref: gref)! }

        func stamp(_ gref: GrantRef, base: UInt64) {
            for sector in 0..<PageGeometry.sectors { xen.memory.setToken(guestPage(gref), sector: sector, base + UInt64(sector)) }
        }

        func tokens(_ gref: GrantRef) -> [UInt64] {
            (0..<PageGeometry.sectors).map { xen.memory.token(guestPage(gref), sector: $0) }
        }
    }

    private enum PageGeometry { static let sectors = Blkif.sectorsPerPage }

    @Test func biosCompleteInAnyOrderAndPagesStayInFlightUntilTheLastOne() throws {
        let rig = Rig()
        let handle = try #require(rig.xen.mapOne(rig.pages[0], 1)).handle
        var random = SeededGenerator(seed: 9)
        var open: [BioID] = []
        for round in 0..<2_000 {
            open.append(rig.device.submit(.read, sector: UInt64(round % 56),
                                          segments: [BioSegment(page: rig.pages[0], firstSect: 0, lastSect: 0)]))
            if open.count > 5 { rig.device.complete(open.remove(at: Int.random(in: 0..<open.count, using: &random))) }
        }
        #expect(rig.device.inFlightCount == open.count)
        while open.count > 1 { rig.device.complete(open.removeLast()) }
        _ = rig.xen.log.drain()
        // One bio still uses the page: unmapping it now is observed.
        rig.xen.grants.unmap([UnmapOp(hostPage: rig.pages[0], handle: handle)])
        #expect(rig.xen.log.drain().contains { $0.isUnmapInUse })
        rig.device.complete(open[0])
        #expect(rig.device.inFlightCount == 0)
    }

    /// The grant table remembers that a mapped frame was live until any page
    /// is freed: freeing the mapped page itself while its bio is in flight
    /// is still a use after free at completion, and freeing another page
    /// only sends the liveness question back to the page allocator.
    @Test func aPageFreedWhileItsBioIsInFlightIsAUseAfterFreeAtCompletion() throws {
        let rig = Rig()
        let mapped = try #require(rig.xen.kernel.pages.allocate(owner: owner))
        let other = try #require(rig.xen.kernel.pages.allocate(owner: owner))
        let page = [BioSegment(page: mapped, firstSect: 0, lastSect: 7)]
        #expect(rig.xen.mapOne(mapped, 1)?.status == .okay)
        rig.stamp(1, base: 500)

        // Another page freed: the mapped one is still live and its data moves.
        rig.xen.kernel.pages.free(other)
        let first = rig.device.submit(.write, sector: 0, segments: page)
        _ = rig.xen.log.drain()
        rig.device.complete(first)
        #expect(rig.xen.log.drain().isEmpty)
        #expect(rig.device.disk.token(at: 3) == 503)

        // The mapped page itself freed mid-flight: reported, and nothing moves.
        let second = rig.device.submit(.read, sector: 8, segments: page)
        rig.xen.kernel.pages.free(mapped)
        _ = rig.xen.log.drain()
        rig.device.complete(second)
        let seen = rig.xen.log.drain()
        #expect(seen == [.useAfterFree(address: mapped.description, access: .write, what: "block I/O on a freed page")])
        #expect(rig.tokens(1) == (0..<8).map { 500 + UInt64($0) })
    }

    @Test func theDiskAnswersAsAPlainMapOfSectorsWould() {
        let disk = Ramdisk(sectors: 1 << 40)
        var model: [UInt64: UInt64] = [:]
        var random = SeededGenerator(seed: 4)
        let places: [ClosedRange<UInt64>] = [0...4_096, 1_000_000...1_010_000, (1 << 39)...((1 << 39) + 100)]
        for step in 0..<5_000 {
            let sector = UInt64.random(in: places.randomElement(using: &random)!, using: &random)
            let count = UInt64.random(in: 1...20, using: &random)
            if step % 4 == 3 {
                disk.discard(from: sector, count: count)
                for each in sector..<(sector + count) { model[each] = nil }
            } else {
                for each in sector..<(sector + count) {
                    disk.store(UInt64(step), at: each)
                    model[each] = UInt64(step)
                }
            }
        }
        for place in places {
            for sector in place {
                #expect(disk.token(at: sector) == model[sector] ?? Ramdisk.initialToken(sector: sector))
            }
        }
    }

    @Test func aWriteMovesGuestTokensToDiskAtCompletionOnly() throws {
        let rig = Rig()
        let handle = try #require(rig.xen.mapOne(rig.pages[0], 1, readOnly: true)).handle
        rig.stamp(1, base: 100)
        let bio = rig.device.submit(.write, sector: 10, segments: [BioSegment(page: rig.pages[0], firstSect: 2, lastSect: 5)])
        #expect(rig.device.inFlightCount == 1)
        #expect(rig.device.disk.token(at: 10) == Ramdisk.initialToken(sector: 10))
        rig.device.complete(bio)
        #expect(rig.device.inFlightCount == 0)
        #expect((10...13).map { rig.device.disk.token(at: $0) } == [102, 103, 104, 105])
        #expect(rig.device.disk.token(at: 14) == Ramdisk.initialToken(sector: 14))
        #expect(rig.device.disk.token(at: 9) == Ramdisk.initialToken(sector: 9))
        // Completing twice does nothing.
        rig.device.complete(bio)
        #expect(rig.xen.log.drain().filter { $0.isAccessUnmapped || $0.isUseAfterFree || $0.isUnmapInUse }.isEmpty)
        // After completion the page is no longer in use.
        #expect(rig.xen.unmapOne(rig.pages[0], handle).status == .okay)
        #expect(!rig.xen.log.drain().contains { $0.isUnmapInUse })
    }

    @Test func aReadBringsDiskTokensIntoTheGuestPageAtCompletion() throws {
        let rig = Rig()
        _ = try #require(rig.xen.mapOne(rig.pages[0], 1))
        _ = try #require(rig.xen.mapOne(rig.pages[1], 2))
        rig.stamp(1, base: 500)
        // Write 1's sectors 0-7 to disk 20..27, then read 22..25 into 2's sectors 4..7.
        rig.device.complete(rig.device.submit(.write, sector: 20, segments: [BioSegment(page: rig.pages[0], firstSect: 0, lastSect: 7)]))
        let read = rig.device.submit(.read, sector: 22, segments: [BioSegment(page: rig.pages[1], firstSect: 4, lastSect: 7)])
        #expect(rig.tokens(2) == Array(repeating: 0, count: 8))
        rig.device.complete(read)
        #expect(rig.tokens(2) == [0, 0, 0, 0, 502, 503, 504, 505])
        // Several segments advance the disk sector one after another.
        let multi = rig.device.submit(.read, sector: 40, segments: [
            BioSegment(page: rig.pages[0], firstSect: 0, lastSect: 1),
            BioSegment(page: rig.pages[1], firstSect: 7, lastSect: 7),
        ])
        rig.device.complete(multi)
        #expect(Array(rig.tokens(1)[0...1]) == [Ramdisk.initialToken(sector: 40), Ramdisk.initialToken(sector: 41)])
        #expect(rig.tokens(2)[7] == Ramdisk.initialToken(sector: 42))
        #expect(rig.xen.log.drain().filter { $0.isAccessUnmapped || $0.isUseAfterFree }.isEmpty)
    }

    @Test func dataMovesThroughWhateverThePageMapsAtCompletion() throws {
        let rig = Rig()
        let first = try #require(rig.xen.mapOne(rig.pages[0], 1)).handle
        let bio = rig.device.submit(.read, sector: 3, segments: [BioSegment(page: rig.pages[0], firstSect: 0, lastSect: 0)])
        #expect(rig.xen.unmapOne(rig.pages[0], first).status == .okay)
        _ = try #require(rig.xen.mapOne(rig.pages[0], 2))
        rig.device.complete(bio)
        #expect(rig.tokens(2)[0] == Ramdisk.initialToken(sector: 3))
        #expect(rig.tokens(1)[0] == 0)
    }

    @Test func ioThroughAnUnmappedPageIsObserved() throws {
        let rig = Rig()
        rig.stamp(1, base: 1)
        rig.device.complete(rig.device.submit(.write, sector: 0, segments: [BioSegment(page: rig.pages[3], firstSect: 0, lastSect: 7)]))
        let log = rig.xen.log.drain()
        #expect(log.count == 1)
        guard case .accessUnmapped(let page, _)? = log.first else { Issue.record("expected accessUnmapped, saw \(log)"); return }
        #expect(page == rig.pages[3])
        #expect(rig.device.disk.token(at: 0) == Ramdisk.initialToken(sector: 0))
    }

    @Test func aDeviceWriteIntoAReadOnlyMappingIsObserved() throws {
        let rig = Rig(readOnly: true)
        _ = try #require(rig.xen.mapOne(rig.pages[0], 1, readOnly: true))
        _ = rig.xen.log.drain()
        rig.stamp(1, base: 900)
        rig.device.complete(rig.device.submit(.read, sector: 0, segments: [BioSegment(page: rig.pages[0], firstSect: 0, lastSect: 7)]))
        let log = rig.xen.log.drain()
        #expect(log.count == 1 && log.first?.isAccessUnmapped == true)
        #expect(rig.tokens(1) == (900..<908).map { UInt64($0) })
        // Writing to disk from it is fine.
        rig.device.complete(rig.device.submit(.write, sector: 0, segments: [BioSegment(page: rig.pages[0], firstSect: 0, lastSect: 7)]))
        #expect(rig.xen.log.drain().isEmpty)
        #expect(rig.device.disk.token(at: 0) == 900)
    }

    @Test func ioOnAFreedPageIsObservedAsUseAfterFree() throws {
        let rig = Rig()
        let page = try #require(rig.xen.kernel.pages.allocate(owner: owner))
        let handle = try #require(rig.xen.mapOne(page, 1)).handle
        let bio = rig.device.submit(.read, sector: 0, segments: [BioSegment(page: page, firstSect: 0, lastSect: 7)])
        _ = rig.xen.unmapOne(page, handle)
        rig.xen.kernel.pages.free(page)
        _ = rig.xen.log.drain()
        rig.device.complete(bio)
        let log = rig.xen.log.drain()
        #expect(log.count == 1 && log.first?.isUseAfterFree == true)
        #expect(rig.tokens(1) == Array(repeating: 0, count: 8))
    }

    @Test func unmapWhileABioIsInFlightIsObserved() throws {
        let rig = Rig()
        let handle = try #require(rig.xen.mapOne(rig.pages[0], 1)).handle
        let bio = rig.device.submit(.write, sector: 0, segments: [BioSegment(page: rig.pages[0], firstSect: 0, lastSect: 3)])
        _ = rig.xen.log.drain()
        #expect(rig.xen.unmapOne(rig.pages[0], handle).status == .okay)
        let log = rig.xen.log.drain()
        #expect(log.contains(.unmapInUse(handle: handle, page: rig.pages[0])))
        rig.device.complete(bio)
        #expect(rig.xen.log.drain().contains { $0.isAccessUnmapped })
        // Once the bio is done the page is free for use again, without observation.
        let again = try #require(rig.xen.mapOne(rig.pages[0], 1)).handle
        _ = rig.xen.log.drain()
        _ = rig.xen.unmapOne(rig.pages[0], again)
        #expect(!rig.xen.log.drain().contains { $0.isUnmapInUse })
    }

    @Test func aPageInTwoBiosStaysInUseUntilBothComplete() throws {
        let rig = Rig()
        let handle = try #require(rig.xen.mapOne(rig.pages[0], 1)).handle
        let segment = BioSegment(page: rig.pages[0], firstSect: 0, lastSect: 0)
        let a = rig.device.submit(.write, sector: 0, segments: [segment, segment])
        let b = rig.device.submit(.write, sector: 8, segments: [segment])
        rig.device.complete(a)
        _ = rig.xen.log.drain()
        _ = rig.xen.unmapOne(rig.pages[0], handle)
        #expect(rig.xen.log.drain().contains { $0.isUnmapInUse })
        rig.device.complete(b)
    }

    @Test func discardBringsBackInitialTokens() throws {
        let rig = Rig()
        _ = try #require(rig.xen.mapOne(rig.pages[0], 1))
        rig.stamp(1, base: 70)
        rig.device.complete(rig.device.submit(.write, sector: 8, segments: [BioSegment(page: rig.pages[0], firstSect: 0, lastSect: 7)]))
        rig.device.discard(sector: 10, count: 2)
        #expect((8...13).map { rig.device.disk.token(at: $0) } ==
                [70, 71, Ramdisk.initialToken(sector: 10), Ramdisk.initialToken(sector: 11), 74, 75])
    }

    @Test func ramdiskInitialTokensDifferPerSector() {
        let disk = Ramdisk(sectors: 16)
        #expect(disk.sectors == 16)
        let tokens = (0..<16).map { disk.token(at: $0) }
        #expect(tokens == (0..<16).map { Ramdisk.initialToken(sector: $0) })
        #expect(Set(tokens).count == 16)
        #expect(!tokens.contains(0))
    }

    @Test func eachAttachBringsAFreshDisk() throws {
        let rig = Rig()
        _ = try #require(rig.xen.mapOne(rig.pages[0], 1))
        rig.stamp(1, base: 1)
        rig.device.complete(rig.device.submit(.write, sector: 0, segments: [BioSegment(page: rig.pages[0], firstSect: 0, lastSect: 0)]))
        #expect(rig.xen.device(vbd: 0)?.disk.token(at: 0) == 1)
        let fresh = rig.xen.attachDisk(vbd: 0, sectors: 8)
        #expect(rig.xen.device(vbd: 0) === fresh)
        #expect(fresh.disk.token(at: 0) == Ramdisk.initialToken(sector: 0))
        #expect(rig.xen.device(vbd: 1) == nil)
    }
}

@Suite struct XenstoreTests {
    /// As sscanf's %u reads it: leading white space, then digits, the rest ignored.
    @Test func readUnsignedParsesLikePercentU() {
        let store = Xenstore()
        let dir = Xenstore.frontendDirectory(domid: 7, vbd: 51712)
        #expect(dir == "/local/domain/7/device/vbd/51712")
        #expect(Xenstore.backendDirectory(domid: 7, vbd: 51712) == "/local/domain/0/backend/vbd/7/51712")
        let cases: [(String, UInt32?)] = [("1", 1), ("0", 0), ("352", 352), ("4294967295", .max),
                                          ("yes", nil), ("", nil), ("0x1", 0), (" 1", 1), ("1\n", 1),
                                          ("12abc", 12), ("4294967296", nil)]
        for (value, expected) in cases {
            store.write(dir + "/key", value)
            #expect(store.readUnsigned(dir + "/key") == expected, "value \(value)")
            #expect(store.read(dir + "/key") == value)
        }
        #expect(store.readUnsigned(dir + "/absent") == nil)
        #expect(store.read(dir + "/absent") == nil)
    }

    @Test func removeDirectoryTakesOnlyThatDirectory() {
        let store = Xenstore()
        store.write("/a/b/x", "1")
        store.write("/a/b/c/y", "2")
        store.write("/a/bc/z", "3")
        store.write("/a/b", "4")
        store.removeDirectory("/a/b")
        #expect(store.read("/a/b/x") == nil)
        #expect(store.read("/a/b/c/y") == nil)
        #expect(store.read("/a/bc/z") == "3")
        #expect(store.read("/a/b") == "4")
    }
}
