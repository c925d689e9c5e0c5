import Blkif
import Recording

/// A record's bytes as whole 512-byte sectors: reads and writes widen to
/// every sector they touch (a partial sector moves whole, as the block layer
/// would do it), trims narrow to the sectors they cover whole (discarding a
/// neighbour's bytes would lose data). Either is counted when it changes the range.
struct SectorRange: Hashable {
    let start: UInt64
    let end: UInt64
    /// Whether the bytes did not start and end on sector boundaries.
    let adjusted: Bool

    static let sectorBytes: UInt64 = 512

    init(start: UInt64, end: UInt64, adjusted: Bool) {
        self.start = start
        self.end = end
        self.adjusted = adjusted
    }

    /// The sectors `offset..<offset+length` touch; nil when the end overflows.
    static func widened(offset: UInt64, length: UInt64) -> SectorRange? {
        let (last, overflow) = offset.addingReportingOverflow(length)
        guard !overflow else { return nil }
        let start = offset / sectorBytes
        let end = last / sectorBytes + (last % sectorBytes == 0 ? 0 : 1)
        return SectorRange(start: start, end: end, adjusted: offset % sectorBytes != 0 || last % sectorBytes != 0)
    }

    /// The sectors `offset..<offset+length` cover whole; nil when the end overflows.
    static func narrowed(offset: UInt64, length: UInt64) -> SectorRange? {
        let (last, overflow) = offset.addingReportingOverflow(length)
        guard !overflow else { return nil }
        let start = offset / sectorBytes + (offset % sectorBytes == 0 ? 0 : 1)
        let end = max(start, last / sectorBytes)
        return SectorRange(start: start, end: end, adjusted: offset % sectorBytes != 0 || last % sectorBytes != 0)
    }

    var count: UInt64 { end - start }
}

/// Cuts a sector range into ring requests of at most `maxSegments` pages.
/// Pages are the guest's 4 KiB buffers laid over the disk's 4 KiB-aligned
/// blocks (as the page cache lays them): the first segment starts at
/// `start % 8`, the last ends at `(end - 1) % 8`, the ones between are whole.
/// So an unaligned I/O keeps its exact sectors, and a request's segments are
/// contiguous on disk as blkback requires.
enum RequestSplitter {
    static let sectorsPerPage = UInt64(Blkif.sectorsPerPage)

    /// Calls `body` with each ring request, in disk order.
    static func split(_ range: SectorRange, operation: PlannedRequest.Operation, maxSegments: Int,
                      _ body: (PlannedRequest) throws -> Void) rethrows {
        var sector = range.start
        var plan = PlannedRequest(operation: operation, sector: sector)
        plan.segments.reserveCapacity(maxSegments)
        while sector < range.end {
            let pageEnd = (sector / sectorsPerPage + 1) * sectorsPerPage
            let segmentEnd = min(pageEnd, range.end)
            plan.segments.append(PlannedRequest.Segment(first: UInt8(sector % sectorsPerPage),
                                                        last: UInt8((segmentEnd - 1) % sectorsPerPage)))
            sector = segmentEnd
            if plan.segments.count == maxSegments || sector == range.end {
                try body(plan)
                plan.sector = sector
                plan.segments.removeAll(keepingCapacity: true)
            }
        }
    }

    /// How many ring requests `split` makes of `range`.
    static func requestCount(_ range: SectorRange, maxSegments: Int) -> UInt64 {
        guard range.count > 0 else { return 0 }
        let pages = (range.end - 1) / sectorsPerPage - range.start / sectorsPerPage + 1
        return (pages + UInt64(maxSegments) - 1) / UInt64(maxSegments)
    }
}
