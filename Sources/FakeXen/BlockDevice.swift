import Blkif

/// A ramdisk holding one 64-bit token per 512-byte sector. Sectors never
/// written read back as a token derived from their number, so a read from the
/// wrong place is as visible as a write to it.
public final class Ramdisk {
    public let sectors: UInt64
    /// Where the tokens live. Only this class reaches it and no call into it
    /// calls back out, so its accesses cannot overlap.
    private let blocks = SectorBlocks()

    public init(sectors: UInt64) { self.sectors = sectors }

    public static func initialToken(sector: UInt64) -> UInt64 { 0xD15C_0000_0000_0000 ^ sector }

    // A sector is stored as its token XOR its initial token, so that the zero
    // a fresh block starts with reads back as the initial token, with no
    // separate "written" mark: a written token equal to the initial one reads
    // back the same either way.

    public func token(at sector: UInt64) -> UInt64 {
        guard let block = blocks.existing(sector) else { return Self.initialToken(sector: sector) }
        return block[Int(sector & SectorBlocks.offsetMask)] ^ Self.initialToken(sector: sector)
    }

    func store(_ token: UInt64, at sector: UInt64) {
        blocks.creating(sector)[Int(sector & SectorBlocks.offsetMask)] = token ^ Self.initialToken(sector: sector)
    }

    /// The initial tokens of the 8 sectors from `sector` on.
    private static func initialTokens(from sector: UInt64) -> SIMD8<UInt64> {
        (SIMD8(repeating: sector) &+ SIMD8(0, 1, 2, 3, 4, 5, 6, 7)) ^ SIMD8(repeating: initialToken(sector: 0))
    }

    /// Whether a whole page's run lands in one block: then it moves as one
    /// vector, not sector by sector (the usual segment is a whole page).
    private static func isWholePageInOneBlock(_ pageSectors: ClosedRange<Int>, at sector: UInt64) -> Bool {
        pageSectors.lowerBound == 0 && pageSectors.upperBound == 7
            && sector & SectorBlocks.offsetMask <= SectorBlocks.sectorsPerBlock - 8
    }

    /// Moves a run of sectors from a guest page into the disk.
    ///
    /// A whole page's move, the usual one, is inlined into the block
    /// device's transfer; any other run is moved out of line.
    @inline(__always)
    func write(from page: SIMD8<UInt64>, pageSectors: ClosedRange<Int>, to sector: UInt64) {
        if Self.isWholePageInOneBlock(pageSectors, at: sector) {
            let block = blocks.creating(sector) + Int(sector & SectorBlocks.offsetMask)
            UnsafeMutableRawPointer(block).storeBytes(of: page ^ Self.initialTokens(from: sector),
                                                      as: SIMD8<UInt64>.self)
            return
        }
        writeSectorBySector(from: page, pageSectors: pageSectors, to: sector)
    }

    @inline(never)
    private func writeSectorBySector(from page: SIMD8<UInt64>, pageSectors: ClosedRange<Int>, to sector: UInt64) {
        var diskSector = sector
        var block = blocks.creating(diskSector)
        for pageSector in pageSectors {
            let offset = diskSector & SectorBlocks.offsetMask
            // A run of at most 8 sectors crosses into the next block at most once.
            if offset == 0 && diskSector != sector { block = blocks.creating(diskSector) }
            block[Int(offset)] = page[pageSector] ^ Self.initialToken(sector: diskSector)
            diskSector += 1
        }
    }

    /// Reads a run of sectors into a guest page (a whole page inline, as `write`).
    @inline(__always)
    func read(into page: inout SIMD8<UInt64>, pageSectors: ClosedRange<Int>, from sector: UInt64) {
        if Self.isWholePageInOneBlock(pageSectors, at: sector) {
            var stored = SIMD8<UInt64>()
            if let block = blocks.existing(sector) {
                stored = UnsafeRawPointer(block + Int(sector & SectorBlocks.offsetMask))
                    .loadUnaligned(as: SIMD8<UInt64>.self)
            }
            page = stored ^ Self.initialTokens(from: sector)
            return
        }
        readSectorBySector(into: &page, pageSectors: pageSectors, from: sector)
    }

    @inline(never)
    private func readSectorBySector(into page: inout SIMD8<UInt64>, pageSectors: ClosedRange<Int>, from sector: UInt64) {
        var diskSector = sector
        var block = blocks.existing(diskSector)
        for pageSector in pageSectors {
            let offset = diskSector & SectorBlocks.offsetMask
            if offset == 0 && diskSector != sector { block = blocks.existing(diskSector) }
            let stored = block.map { $0[Int(offset)] } ?? 0
            page[pageSector] = stored ^ Self.initialToken(sector: diskSector)
            diskSector += 1
        }
    }

    func discard(from sector: UInt64, count: UInt64) {
        var current = sector
        let end = sector + count
        while current < end {
            let offset = current & SectorBlocks.offsetMask
            let blockEnd = current - offset + SectorBlocks.sectorsPerBlock
            let runEnd = min(end, blockEnd)
            if offset == 0 && runEnd == blockEnd {
                blocks.remove(current)
            } else if let block = blocks.existing(current) {
                (block + Int(offset)).update(repeating: 0, count: Int(runEnd - current))
            }
            current = runEnd
        }
    }
}

/// A disk's sectors in blocks of 512 (4 KiB), each allocated zeroed when a
/// sector in it is first written, found by block number through a
/// `NumberedTable` (sparse over a large disk, an index computation over a
/// small one). Blocks are raw memory so that reading and writing a sector
/// through a block pointer takes no uniqueness or exclusivity check: the
/// table itself changes only when a block comes or goes.
final class SectorBlocks {
    static var sectorsPerBlock: UInt64 { 512 }
    static var offsetMask: UInt64 { sectorsPerBlock - 1 }
    private static var blockShift: UInt64 { 9 }

    // Unchecked exclusivity (as for the other tables in this module): every
    // access is a plain read or write or one call into the table, none of
    // which reaches back into this object, so accesses cannot overlap.
    @exclusivity(unchecked) private var table = NumberedTable<UnsafeMutablePointer<UInt64>>()
    /// The block looked up last: a request's segments are consecutive on
    /// disk, so they nearly always fall in the same block.
    @exclusivity(unchecked) private var lastNumber = UInt64.max
    @exclusivity(unchecked) private var lastBlock: UnsafeMutablePointer<UInt64>?

    deinit {
        table.forEachInOrder { _, block in block.deallocate() }
    }

    /// The block holding `sector`, nil when nothing in it was ever written (or it was discarded whole).
    ///
    /// The last block's answer is inlined into the ramdisk's per-segment
    /// reads and writes; a table lookup stays out of line.
    @inline(__always)
    func existing(_ sector: UInt64) -> UnsafeMutablePointer<UInt64>? {
        let number = sector >> Self.blockShift
        if number == lastNumber { return lastBlock }
        return lookUp(number)
    }

    @inline(never)
    private func lookUp(_ number: UInt64) -> UnsafeMutablePointer<UInt64>? {
        let block = table[number]
        lastNumber = number
        lastBlock = block
        return block
    }

    /// The block holding `sector`, allocated (all zero) if it did not exist.
    @inline(__always)
    func creating(_ sector: UInt64) -> UnsafeMutablePointer<UInt64> {
        if let block = existing(sector) { return block }
        return allocateBlock(for: sector)
    }

    @inline(never)
    private func allocateBlock(for sector: UInt64) -> UnsafeMutablePointer<UInt64> {
        let block = UnsafeMutablePointer<UInt64>.allocate(capacity: Int(Self.sectorsPerBlock))
        block.initialize(repeating: 0, count: Int(Self.sectorsPerBlock))
        let number = sector >> Self.blockShift
        table[number] = block
        lastNumber = number
        lastBlock = block
        return block
    }

    /// Drops the block holding `sector`: all of it reads as never written again.
    func remove(_ sector: UInt64) {
        let number = sector >> Self.blockShift
        guard let block = table.removeValue(at: number) else { return }
        block.deallocate()
        if number == lastNumber { lastBlock = nil }
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

/// A submitted bio, until it completes.
public struct BioID: Hashable, Sendable {
    /// Where the device keeps the bio while it is in flight; reused after.
    let slot: Int
    /// Counts up and is never reused, so a completed bio's id never names a
    /// later bio kept in the same slot.
    let serial: UInt64
}

/// The disk behind one vbd. Submitted I/O stays in flight until completed;
/// the data moves at completion, through whatever the pages map then.
public final class BlockDevice {
    /// A bio is a request's pages: at most a ring slot's worth of segments.
    public static var maxSegmentsPerBio: Int { Blkif.maxSegmentsPerRequest }

    public let disk: Ramdisk
    private let grants: GrantTable
    private let memory: GuestMemory
    private let log: ObservationLog
    /// The bios in flight and the slots they live in, in one value so that
    /// opening or closing a bio is one access to this object, not one per
    /// counter and array touched.
    // Unchecked exclusivity: every access is one call into `BioSlots`
    // (open, close, release, a read of a slot's segment storage or of the
    // count), none of which calls out of the value, so no two accesses can
    // overlap; there are three per bio, where the runtime check of each
    // stored property cost more than the bookkeeping itself.
    @exclusivity(unchecked) private var slots = BioSlots()

    public var inFlightCount: Int { slots.inFlightCount }

    init(disk: Ramdisk, grants: GrantTable, memory: GuestMemory, log: ObservationLog) {
        self.disk = disk
        self.grants = grants
        self.memory = memory
        self.log = log
    }

    deinit { slots.deallocateSegmentStorage() }

    /// `submit_bio`: the pages are in use by the device from now on.
    public func submit(_ direction: BioDirection, sector: UInt64, segments: [BioSegment]) -> BioID {
        submit(direction, sector: sector, count: segments.count) { segments[$0] }
    }

    /// `submit_bio` of a request's segments: segment `i` moves through
    /// `pages[i]` (`pages` may be longer). Same as building the bio's
    /// segments and submitting them, without an array per bio.
    public func submit(_ direction: BioDirection, sector: UInt64, pages: [PageFrame],
                       segments: [BlkifSegment]) -> BioID {
        precondition(pages.count >= segments.count, "a page per segment")
        return submit(direction, sector: sector, count: segments.count) { index in
            BioSegment(page: pages[index], firstSect: Int(segments[index].firstSect),
                       lastSect: Int(segments[index].lastSect))
        }
    }

    /// Fills a new bio's own segment storage with `segment(0..<count)` and
    /// marks each page in use. Inlined into each public `submit`, so that
    /// `segment` is too (called through a closure, it cost a call per segment).
    @inline(__always)
    private func submit(_ direction: BioDirection, sector: UInt64, count: Int,
                        segment: (Int) -> BioSegment) -> BioID {
        precondition(count <= Self.maxSegmentsPerBio, "a bio holds at most a request's segments")
        let (id, room) = slots.open(direction, sector: sector, segmentCount: count)
        for index in 0..<count {
            let next = segment(index)
            (room + index).initialize(to: next)
            grants.beginIO(on: next.page)
        }
        return id
    }

    /// The device finishes a bio: data moves now, then the pages are released.
    public func complete(_ id: BioID) {
        guard let bio = slots.close(id) else { return }
        var sector = bio.sector
        // The segments are read in place: the slot goes back for reuse only
        // after the loop, so no bio can refill them meanwhile.
        for segment in bio.segmentBuffer {
            // Ending the page's use first finds its mapping and the frame's
            // liveness in the same lookup; the use count is not what the
            // transfer looks at.
            let use = grants.endIO(on: segment.page)
            transfer(bio.direction, segment, through: use.mapping, pageIsLive: use.pageIsLive, diskSector: sector)
            sector += UInt64(segment.lastSect - segment.firstSect + 1)
        }
        slots.release(id)
    }

    public func discard(sector: UInt64, count: UInt64) { disk.discard(from: sector, count: count) }

    /// `mapping` is what `segment.page` backs now, `pageIsLive` whether the
    /// page's frame is allocated now (`PageAllocator.isLive`).
    private func transfer(_ direction: BioDirection, _ segment: BioSegment, through mapping: GrantMapping?,
                          pageIsLive: Bool, diskSector: UInt64) {
        guard pageIsLive else {
            log.record(.useAfterFree(address: segment.page.description, access: direction == .read ? .write : .read,
                                     what: "block I/O on a freed page"))
            return
        }
        guard let mapping else {
            log.record(.accessUnmapped(page: segment.page, detail: "block I/O through a page that maps no grant"))
            return
        }
        // A segment is checked before its bio is built, but one computed
        // from bytes the guest changed after the check can say anything:
        // the I/O would run into the next host page, which the model has
        // no bytes for, so it is reported and nothing moves.
        guard segment.firstSect <= segment.lastSect, segment.lastSect < Blkif.sectorsPerPage else {
            log.record(.accessUnmapped(page: segment.page,
                                       detail: "block I/O of sectors \(segment.firstSect)-\(segment.lastSect) runs past the end of the page"))
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
            memory.receive(from: disk, sectors: sectors, at: diskSector, into: mapping.guestPage)
        case .write:
            disk.write(from: memory.tokens(of: mapping.guestPage), pageSectors: sectors, to: diskSector)
        }
    }
}

/// A device's bios by slot. A slot is taken at submit and given back at
/// completion, so there are as many slots as the most bios ever in flight at
/// once (a queue's worth), and a bio is found by indexing, not hashing.
struct BioSlots {
    struct Bio {
        /// `freeSerial` while the slot holds no bio.
        var serial: UInt64
        var direction: BioDirection
        var sector: UInt64
        /// The slot's own room for a request's worth of segments, allocated
        /// once with the slot and kept for every bio after: filling it is a
        /// write through a pointer, with none of the uniqueness checks an
        /// array append makes per segment. Freed with the device.
        let segments: UnsafeMutablePointer<BioSegment>
        var segmentCount: Int

        /// The segments of the bio in this slot.
        var segmentBuffer: UnsafeBufferPointer<BioSegment> {
            UnsafeBufferPointer(start: segments, count: segmentCount)
        }
    }

    private static var freeSerial: UInt64 { 0 }

    private var bios: [Bio] = []
    /// Slots of completed bios, for reuse (last freed, first taken).
    private var freeSlots: [Int] = []
    /// Counts up and is never reused.
    private var nextSerial: UInt64 = 1
    private(set) var inFlightCount = 0

    /// Takes a slot for a new bio of `segmentCount` segments and gives it
    /// its id, with the slot's segment storage for the caller to fill.
    mutating func open(_ direction: BioDirection, sector: UInt64, segmentCount: Int)
        -> (id: BioID, segments: UnsafeMutablePointer<BioSegment>) {
        let serial = nextSerial
        nextSerial += 1
        inFlightCount += 1
        if let slot = freeSlots.popLast() {
            bios[slot].serial = serial
            bios[slot].direction = direction
            bios[slot].sector = sector
            bios[slot].segmentCount = segmentCount
            return (BioID(slot: slot, serial: serial), bios[slot].segments)
        }
        let segments = UnsafeMutablePointer<BioSegment>.allocate(capacity: BlockDevice.maxSegmentsPerBio)
        bios.append(Bio(serial: serial, direction: direction, sector: sector, segments: segments,
                        segmentCount: segmentCount))
        return (BioID(slot: bios.count - 1, serial: serial), segments)
    }

    /// Ends the bio `id` names, if it is still in flight, and returns it;
    /// its slot stays taken (its segments readable) until `release`.
    mutating func close(_ id: BioID) -> Bio? {
        guard id.slot < bios.count, bios[id.slot].serial == id.serial else { return nil }
        bios[id.slot].serial = Self.freeSerial
        inFlightCount -= 1
        return bios[id.slot]
    }

    /// Gives a closed bio's slot back for reuse.
    mutating func release(_ id: BioID) { freeSlots.append(id.slot) }

    func deallocateSegmentStorage() {
        for bio in bios { bio.segments.deallocate() }
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
    public let clock = KernelClock()
    /// Written by the trace between events, read by the backend during them.
    public var parameters = ModuleParameters()
    /// The disk of each vbd that ever connected, by vbd. A host has a handful,
    /// and the oracle asks for one per sector it checks: a scan of a short
    /// array costs less than hashing the vbd each time.
    // Unchecked exclusivity: read (a scan for a vbd) or changed (an attach,
    // its device built beforehand) in one statement that calls nothing
    // outside the array, so no two accesses can overlap; the oracle reads it
    // on every request it checks data for, where the runtime check cost more
    // than the scan.
    @exclusivity(unchecked) private var devices: [(vbd: UInt16, device: BlockDevice)] = []

    public init() {
        kernel = FakeKernel(log: log, faults: faults)
        grants = GrantTable(log: log, faults: faults, kernel: kernel, memory: memory)
    }

    /// A fresh disk for a vbd (each connect brings its disk up anew).
    @discardableResult
    public func attachDisk(vbd: UInt16, sectors: UInt64) -> BlockDevice {
        let device = BlockDevice(disk: Ramdisk(sectors: sectors), grants: grants, memory: memory, log: log)
        if let index = devices.firstIndex(where: { $0.vbd == vbd }) {
            devices[index].device = device
        } else {
            devices.append((vbd, device))
        }
        return device
    }

    public func device(vbd: UInt16) -> BlockDevice? {
        for entry in devices where entry.vbd == vbd { return entry.device }
        return nil
    }

    /// The tokens of `vbd`'s disk sectors `first ..< first + tokens.count`,
    /// into `tokens`; false (nothing read) when the vbd never had a disk.
    /// For observers that read the disk on every request: the disk is found
    /// by index and read where it stands, where handing the device out
    /// (`device(vbd:)`) retained each entry it walked past and the device itself.
    public func readDisk(vbd: UInt16, from first: UInt64, into tokens: UnsafeMutableBufferPointer<UInt64>) -> Bool {
        var index = 0
        while index < devices.count {
            if devices[index].vbd == vbd {
                devices[index].device.disk.read(into: tokens, from: first)
                return true
            }
            index += 1
        }
        return false
    }
}
