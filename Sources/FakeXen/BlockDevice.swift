import Blkif

/// A ramdisk holding one 64-bit token per 512-byte sector. Sectors never
/// written read back as a token derived from their number, so a read from the
/// wrong place is as visible as a write to it.
public final class Ramdisk {
    public let sectors: UInt64
    private var tokens: [UInt64: UInt64] = [:]

    public init(sectors: UInt64) { self.sectors = sectors }

    public static func initialToken(sector: UInt64) -> UInt64 { 0xD15C_0000_0000_0000 ^ sector }

    public func token(at sector: UInt64) -> UInt64 { tokens[sector] ?? Self.initialToken(sector: sector) }
    func store(_ token: UInt64, at sector: UInt64) { tokens[sector] = token }
    func discard(from sector: UInt64, count: UInt64) {
        for s in sector..<(sector + count) { tokens[s] = nil }
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
    private var inFlight: [BioID: Bio] = [:]
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
        inFlight[id] = Bio(direction: direction, sector: sector, segments: segments)
        for segment in segments { grants.pagesInFlight[segment.page, default: 0] += 1 }
        return id
    }

    /// The device finishes a bio: data moves now, then the pages are released.
    public func complete(_ id: BioID) {
        guard let bio = inFlight.removeValue(forKey: id) else { return }
        var sector = bio.sector
        for segment in bio.segments {
            transfer(bio.direction, segment, diskSector: sector)
            sector += UInt64(segment.lastSect - segment.firstSect + 1)
            let left = grants.pagesInFlight[segment.page, default: 1] - 1
            grants.pagesInFlight[segment.page] = left > 0 ? left : nil
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
        for offset in 0...(segment.lastSect - segment.firstSect) {
            let pageSector = segment.firstSect + offset
            let sector = diskSector + UInt64(offset)
            switch direction {
            case .read: memory.setToken(mapping.guestPage, sector: pageSector, disk.token(at: sector))
            case .write: disk.store(memory.token(mapping.guestPage, sector: pageSector), at: sector)
            }
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
    /// `xenbus_gather` of one unsigned key: nil when absent or not a number.
    public func readUnsigned(_ path: String) -> UInt32? { nodes[path].flatMap { UInt32($0) } }
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
