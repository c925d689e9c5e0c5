import Blkif

/// A ramdisk holding one 64-bit token per 512-byte sector. Sectors never
/// written read back as a token derived from their number, so a read from the
/// wrong place is as visible as a write to it.
public final class Ramdisk {
    /// Eight sectors to a chunk, so that a segment (at most a page) costs one
    /// or two lookups rather than eight.
    struct Chunk {
        var tokens = SIMD8<UInt64>()
        /// Bit i set: sector i of the chunk has been written.
        var written: UInt8 = 0
    }

    public let sectors: UInt64
    /// Chunk number (sector / 8) to chunk; a chunk with nothing written is
    /// absent. Eight chunks to a table chunk (64 sectors, 640 bytes), so that
    /// random I/O scattered over a large disk pins little unwritten room.
    // Unchecked exclusivity: every access is one call into the table whose
    // closures never reach back into this object, so accesses cannot overlap;
    // the runtime check cost more than the lookup on this per-segment path.
    @exclusivity(unchecked) private var chunks = NumberedTable<Chunk>(numbersPerChunkLog2: 3)

    public init(sectors: UInt64) { self.sectors = sectors }

    public static func initialToken(sector: UInt64) -> UInt64 { 0xD15C_0000_0000_0000 ^ sector }

    public func token(at sector: UInt64) -> UInt64 {
        let lane = Int(sector & 7)
        guard let chunk = chunks[sector >> 3], chunk.written & (1 << lane) != 0 else {
            return Self.initialToken(sector: sector)
        }
        return chunk.tokens[lane]
    }

    func store(_ token: UInt64, at sector: UInt64) {
        let lane = Int(sector & 7)
        chunks.modify(sector >> 3, default: Chunk()) { chunk in
            chunk.tokens[lane] = token
            chunk.written |= 1 << lane
        }
    }

    /// Moves a run of sectors from a guest page into the disk.
    func write(from page: SIMD8<UInt64>, pageSectors: ClosedRange<Int>, to sector: UInt64) {
        var diskSector = sector
        var pageSector = pageSectors.lowerBound
        while pageSector <= pageSectors.upperBound {
            chunks.modify(diskSector >> 3, default: Chunk()) { chunk in
                repeat {
                    let lane = Int(diskSector & 7)
                    chunk.tokens[lane] = page[pageSector]
                    chunk.written |= 1 << lane
                    diskSector += 1
                    pageSector += 1
                } while pageSector <= pageSectors.upperBound && diskSector & 7 != 0
            }
        }
    }

    /// Reads a run of sectors into a guest page.
    func read(into page: inout SIMD8<UInt64>, pageSectors: ClosedRange<Int>, from sector: UInt64) {
        var diskSector = sector
        var pageSector = pageSectors.lowerBound
        while pageSector <= pageSectors.upperBound {
            let chunk = chunks[diskSector >> 3]
            repeat {
                let lane = Int(diskSector & 7)
                if let chunk, chunk.written & (1 << lane) != 0 {
                    page[pageSector] = chunk.tokens[lane]
                } else {
                    page[pageSector] = Self.initialToken(sector: diskSector)
                }
                diskSector += 1
                pageSector += 1
            } while pageSector <= pageSectors.upperBound && diskSector & 7 != 0
        }
    }

    func discard(from sector: UInt64, count: UInt64) {
        var current = sector
        let end = sector + count
        while current < end {
            let lane = Int(current & 7)
            let left = chunks.modify(current >> 3) { chunk -> UInt8 in
                chunk.written &= ~(1 << lane)
                return chunk.written
            }
            if let left {
                if left == 0 { chunks[current >> 3] = nil }
            } else if lane == 0 && end - current >= 8 {
                current += 8
                continue
            }
            current += 1
        }
    }
}

public enum BioDirection: Sendable { case read, write }

/// One page's part of a bio.
public struct BioSegment: Hashable, Sendable {
    public var page: PageFrame
    public var firstSect: Int
    public var lastSect: Int
    public init(page: PageFrame, firstSect: Int, lastSect: Int) {
        self.page = page
        self.firstSect = firstSect
        self.lastSect = lastSect
    }
}

public struct BioID: Hashable, Sendable { let value: UInt64 }

/// The disk behind one vbd. Submitted I/O stays in flight until completed;
/// the data moves at completion, through whatever the pages map then.
public final class BlockDevice {
    private struct Bio {
        let direction: BioDirection
        let sector: UInt64
        let segments: [BioSegment]
    }

    public let disk: Ramdisk
    private let grants: GrantTable
    private let kernel: FakeKernel
    private let memory: GuestMemory
    private let log: ObservationLog
    /// Bio id to bio. Ids count up and are never reused; only the queue's
    /// worth in flight is held.
    // Unchecked exclusivity: every access is one call into the table whose
    // closures never reach back into this object, so accesses cannot overlap;
    // the runtime check cost more than the lookup on this per-segment path.
    @exclusivity(unchecked) private var inFlight = NumberedTable<Bio>()
    private var nextID: UInt64 = 0

    init(disk: Ramdisk, grants: GrantTable, kernel: FakeKernel, memory: GuestMemory, log: ObservationLog) {
        self.disk = disk
        self.grants = grants
        self.kernel = kernel
        self.memory = memory
        self.log = log
    }

    /// `submit_bio`: the pages are in use by the device from now on.
    public func submit(_ direction: BioDirection, sector: UInt64, segments: [BioSegment]) -> BioID {
        let id = BioID(value: nextID)
        nextID += 1
        inFlight[id.value] = Bio(direction: direction, sector: sector, segments: segments)
        for segment in segments { grants.pagesInFlight.begin(segment.page) }
        return id
    }

    /// The device finishes a bio: data moves now, then the pages are released.
    public func complete(_ id: BioID) {
        guard let bio = inFlight.removeValue(at: id.value) else { return }
        var sector = bio.sector
        for segment in bio.segments {
            transfer(bio.direction, segment, diskSector: sector)
            sector += UInt64(segment.lastSect - segment.firstSect + 1)
            grants.pagesInFlight.end(segment.page)
        }
    }

    public func discard(sector: UInt64, count: UInt64) { disk.discard(from: sector, count: count) }

    public var inFlightCount: Int { inFlight.count }

    private func transfer(_ direction: BioDirection, _ segment: BioSegment, diskSector: UInt64) {
        guard kernel.pages.isLive(segment.page) else {
            log.record(.useAfterFree(address: segment.page.description, access: direction == .read ? .write : .read,
                                     what: "block I/O on a freed page"))
            return
        }
        guard let mapping = grants.mapping(hostPage: segment.page) else {
            log.record(.accessUnmapped(page: segment.page, detail: "block I/O through a page that maps no grant"))
            return
        }
        if direction == .read && mapping.readOnly {
            log.record(.accessUnmapped(page: segment.page,
                                       detail: "device write into read-only mapping of gref \(mapping.gref)"))
            return
        }
        let sectors = segment.firstSect...segment.lastSect
        switch direction {
        case .read:
            var tokens = memory.tokens(of: mapping.guestPage)
            disk.read(into: &tokens, pageSectors: sectors, from: diskSector)
            memory.setTokens(of: mapping.guestPage, tokens)
        case .write:
            disk.write(from: memory.tokens(of: mapping.guestPage), pageSectors: sectors, to: diskSector)
        }
    }
}

/// xenstore: a flat map of paths to values, with the directory conventions
/// of split drivers.
public final class Xenstore {
    private var nodes: [String: String] = [:]
    public init() {}

    public static func frontendDirectory(domid: DomainID, vbd: UInt16) -> String {
        "/local/domain/\(domid)/device/vbd/\(vbd)"
    }
    public static func backendDirectory(domid: DomainID, vbd: UInt16) -> String {
        "/local/domain/0/backend/vbd/\(domid)/\(vbd)"
    }

    public func write(_ path: String, _ value: String) { nodes[path] = value }
    public func read(_ path: String) -> String? { nodes[path] }
    /// `xenbus_gather(…, "%u", …)`: nil when absent or not a number.
    public func readUnsigned(_ path: String) -> UInt32? { nodes[path].flatMap(Self.scanUnsigned) }

    /// What sscanf's `%u` takes: leading white space, then decimal digits; the rest is ignored.
    public static func scanUnsigned(_ text: String) -> UInt32? {
        let digits = text.drop { $0 == " " || $0 == "\t" || $0 == "\n" }.prefix { $0.isASCII && $0.isNumber }
        return UInt32(digits)
    }
    public func removeDirectory(_ directory: String) {
        nodes = nodes.filter { !$0.key.hasPrefix(directory + "/") }
    }
}

/// The whole fake environment one backend runs against.
public final class FakeXen {
    public let log = ObservationLog()
    public let faults = FaultInjector()
    public let kernel: FakeKernel
    public let memory = GuestMemory()
    public let grants: GrantTable
    public let xenstore = Xenstore()
    private var devices: [UInt16: BlockDevice] = [:]

    public init() {
        kernel = FakeKernel(log: log, faults: faults)
        grants = GrantTable(log: log, faults: faults, kernel: kernel, memory: memory)
    }

    /// A fresh disk for a vbd (each connect brings its disk up anew).
    @discardableResult
    public func attachDisk(vbd: UInt16, sectors: UInt64) -> BlockDevice {
        let device = BlockDevice(disk: Ramdisk(sectors: sectors), grants: grants, kernel: kernel, memory: memory, log: log)
        devices[vbd] = device
        return device
    }

    public func device(vbd: UInt16) -> BlockDevice? { devices[vbd] }
}
