import Testing
@testable import FakeXen

/// The oracle reads the disk back through the run and page reads of
/// TokenReads.swift; each must give exactly what `token(at:)` gives sector by
/// sector, at every alignment, across block edges, over written and never
/// written sectors, and at the very end of the sector numbers.
@Suite struct TokenReadsTests {
    /// A disk with a written page at several places, some straddling a block edge.
    static func scatteredDisk() -> Ramdisk {
        let disk = Ramdisk(sectors: UInt64.max)
        let starts: [UInt64] = [0, 9, 507, 509, 512, 1020, 1536, UInt64.max - 20, UInt64.max - 7]
        for (round, start) in starts.enumerated() {
            var page = SIMD8<UInt64>()
            for lane in 0..<8 { page[lane] = UInt64(round + 1) << 32 | UInt64(lane) }
            disk.write(from: page, pageSectors: 0...7, to: start)
        }
        // A partial page, so that written and never-written sectors mix in one run.
        var partial = SIMD8<UInt64>(repeating: 0xABCD)
        partial[3] = 0x1234
        disk.write(from: partial, pageSectors: 2...4, to: 700)
        return disk
    }

    /// Every run of 0…24 sectors starting anywhere in the windows below.
    @Test func aRunReadsWhatEachSectorReads() {
        let disk = Self.scatteredDisk()
        let windows: [ClosedRange<UInt64>] = [0...40, 490...530, 690...720, 1010...1040, 1520...1560,
                                              (UInt64.max - 40)...(UInt64.max - 24)]
        for window in windows {
            for first in window {
                for count in 0...24 {
                    var run = [UInt64](repeating: 0xFFFF_FFFF, count: count)
                    run.withUnsafeMutableBufferPointer { disk.read(into: $0, from: first) }
                    let expected = (0..<count).map { disk.token(at: first &+ UInt64($0)) }
                    #expect(run == expected, "run of \(count) from sector \(first)")
                }
            }
        }
    }

    /// Runs that end on the last sector number, where a page read would step past it.
    @Test func runsEndingOnTheLastSector() {
        let disk = Self.scatteredDisk()
        for count in 1...24 {
            let first = UInt64.max - UInt64(count - 1)
            var run = [UInt64](repeating: 0, count: count)
            run.withUnsafeMutableBufferPointer { disk.read(into: $0, from: first) }
            #expect(run == (0..<count).map { disk.token(at: first + UInt64($0)) }, "last \(count) sectors")
            if count <= 8 {
                let tokens = disk.tokens(from: first, count: count)
                for lane in 0..<8 {
                    #expect(tokens[lane] == (lane < count ? disk.token(at: first + UInt64(lane)) : 0))
                }
            }
        }
    }

    /// `tokens(from:count:)` fills lanes 0..<count as `token(at:)` reads them, later lanes zero.
    @Test func aPageReadFillsItsLanes() {
        let disk = Self.scatteredDisk()
        for first in UInt64(500)...530 {
            for count in 1...8 {
                let tokens = disk.tokens(from: first, count: count)
                for lane in 0..<8 {
                    #expect(tokens[lane] == (lane < count ? disk.token(at: first + UInt64(lane)) : 0),
                            "lane \(lane) of \(count) from \(first)")
                }
            }
        }
    }

    /// A guest page reads as its eight sector tokens; a released page reads as zeros.
    @Test func guestPageTokensMatchSectorReads() {
        let xen = FakeXen()
        xen.grants.grant(domid: 1, gref: 5, readOnly: false)
        let page = xen.grants.guestPage(domid: 1, gref: 5)!
        xen.memory.stamp(page, sectors: 1...6, firstToken: 100)
        let tokens = xen.memory.pageTokens(page)
        for sector in 0..<8 { #expect(tokens[sector] == xen.memory.token(page, sector: sector)) }
        #expect(tokens[0] == 0 && tokens[1] == 100 && tokens[6] == 105 && tokens[7] == 0)
    }
}
