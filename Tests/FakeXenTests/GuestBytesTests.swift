import Blkif
import FakeXen
import Testing

/// The byte view of guest memory, the backend's reads of it through a
/// mapping, and writes armed to land between two reads.
@Suite struct GuestBytesTests {
    /// A granted and mapped page: the guest page and the host frame it is mapped at.
    static func mappedPage(_ xen: FakeXen, gref: GrantRef = 7) throws -> (page: GuestPage, host: PageFrame) {
        let host = xen.kernel.pages.reserve(count: 1)[0]
        xen.grants.grant(domid: guest, gref: gref, readOnly: false)
        let result = try #require(xen.mapOne(host, gref))
        #expect(result.status == .okay)
        return (try #require(xen.grants.guestPage(domid: guest, gref: gref)), host)
    }

    @Test func bytesAreZeroUntilWrittenAndIndependentOfTokens() throws {
        let xen = FakeXen()
        let (page, _) = try Self.mappedPage(xen)
        #expect(xen.memory.bytes(page, offset: 0, count: 8) == [0, 0, 0, 0, 0, 0, 0, 0])
        xen.memory.writeBytes(page, offset: 4094, [0xAA, 0xBB])
        #expect(xen.memory.bytes(page, offset: 4092, count: 4) == [0, 0, 0xAA, 0xBB])
        // The token view does not move with the bytes, nor the bytes with it.
        #expect(xen.memory.token(page, sector: 7) == 0)
        xen.memory.setToken(page, sector: 0, 42)
        #expect(xen.memory.bytes(page, offset: 0, count: 1) == [0])
    }

    @Test func aReadThroughAMappingIsObservedAndAReadWithoutOneIsReported() throws {
        let xen = FakeXen()
        let (page, host) = try Self.mappedPage(xen)
        xen.memory.writeBytes(page, offset: 8, [1, 2, 3])
        _ = xen.log.drain()
        #expect(xen.grants.readGuestBytes(hostPage: host, offset: 8, count: 3) == [1, 2, 3])
        #expect(xen.log.drain() == [.guestRead(GuestByteRead(domid: guest, gref: 7, page: page, offset: 8, count: 3))])
        let unmapped = xen.kernel.pages.reserve(count: 1)[0]
        #expect(xen.grants.readGuestBytes(hostPage: unmapped, offset: 0, count: 2) == [0, 0])
        #expect(xen.log.drain().map(\.isAccessUnmapped) == [true])
    }

    /// An armed write counts only reads that touch its bytes, lands right
    /// after the read that completes its count (that read sees the old
    /// bytes, the next one the new), and is observed landing.
    @Test func anArmedWriteLandsBetweenTwoReads() throws {
        let xen = FakeXen()
        let (page, host) = try Self.mappedPage(xen)
        xen.memory.writeBytes(page, offset: 4, [0, 7])
        xen.memory.armWrite(page, offset: 5, [9], afterReads: 2)
        #expect(xen.memory.armedWrites.count == 1)
        #expect(xen.grants.readGuestBytes(hostPage: host, offset: 0, count: 4) == [0, 0, 0, 0])   // does not touch byte 5
        #expect(xen.grants.readGuestBytes(hostPage: host, offset: 4, count: 2) == [0, 7])         // first read of byte 5
        #expect(xen.memory.armedWrites.first?.readsLeft == 1)
        _ = xen.log.drain()
        #expect(xen.grants.readGuestBytes(hostPage: host, offset: 5, count: 1) == [7])            // second: lands after it
        let landed = xen.log.drain()
        #expect(landed.count == 2)
        guard case .armedWriteLanded(let write)? = landed.last else {
            Issue.record("no landing observed: \(landed)")
            return
        }
        #expect(write.page == page && write.offset == 5 && write.bytes == [9] && write.readsLeft == 0)
        #expect(xen.memory.armedWrites.isEmpty)
        #expect(xen.grants.readGuestBytes(hostPage: host, offset: 4, count: 2) == [0, 9])
        // Observers read without counting.
        xen.memory.armWrite(page, offset: 0, [1], afterReads: 1)
        #expect(xen.memory.bytes(page, offset: 0, count: 1) == [0])
        #expect(xen.memory.armedWrites.count == 1)
    }

    @Test func writesArmedOnOnePageLandInArmingOrder() throws {
        let xen = FakeXen()
        let (page, host) = try Self.mappedPage(xen)
        xen.memory.armWrite(page, offset: 0, [1, 1], afterReads: 1)
        xen.memory.armWrite(page, offset: 1, [2], afterReads: 1)
        _ = xen.grants.readGuestBytes(hostPage: host, offset: 0, count: 8)
        #expect(xen.memory.bytes(page, offset: 0, count: 2) == [1, 2])
    }

    /// A revoked page drops its bytes and whatever was armed on it; a
    /// released page takes no writes.
    @Test func aReleasedPageForgetsItsBytesAndArmedWrites() throws {
        let xen = FakeXen()
        xen.grants.grant(domid: guest, gref: 3, readOnly: false)
        let page = try #require(xen.grants.guestPage(domid: guest, gref: 3))
        xen.memory.writeBytes(page, offset: 0, [5])
        xen.memory.armWrite(page, offset: 0, [6], afterReads: 1)
        #expect(xen.grants.revoke(domid: guest, gref: 3))
        #expect(xen.memory.armedWrites.isEmpty)
        #expect(xen.memory.bytes(page, offset: 0, count: 1) == [0])
        xen.memory.writeBytes(page, offset: 0, [5])
        #expect(xen.memory.bytes(page, offset: 0, count: 1) == [0])
    }

    @Test func theClockCountsMillisecondsAndSaturates() {
        let clock = KernelClock()
        #expect(clock.jiffies == 0)
        clock.advance(milliseconds: 100)
        #expect(clock.jiffies == 100 && clock.isAfter(99) && !clock.isAfter(100))
        clock.advance(milliseconds: .max)
        #expect(clock.jiffies == .max)
    }
}
