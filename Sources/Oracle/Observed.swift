import Blkif
import FakeXen
import Trace

/// A check that failed: where, what the reference predicted, what was seen.
public struct Violation: Hashable, Sendable, CustomStringConvertible {
    public let check: CheckID
    public let position: TracePosition
    public let expected: String
    public let seen: String

    public init(check: CheckID, position: TracePosition, expected: String, seen: String) {
        self.check = check
        self.position = position
        self.expected = expected
        self.seen = seen
    }

    public var description: String { "\(position): \(check.rawValue): expected \(expected); seen \(seen)" }
}

/// One node of the backend's tree as it publishes it (in order, with colours and shape).
public struct ObservedNode: Hashable, Sendable {
    public let gref: GrantRef
    public let isRed: Bool
    public let handle: GrantHandle
    public let left: Int?
    public let right: Int?
    /// The grant's G2013 flags, when the backend publishes them.
    public let flags: ObservedGrantFlags?
    public init(gref: GrantRef, isRed: Bool, handle: GrantHandle, left: Int?, right: Int?,
                flags: ObservedGrantFlags? = nil) {
        self.gref = gref
        self.isRed = isRed
        self.handle = handle
        self.left = left
        self.right = right
        self.flags = flags
    }
}

/// A G2013 grant's flags as the backend publishes them.
public struct ObservedGrantFlags: Hashable, Sendable {
    /// `PERSISTENT_GNT_ACTIVE`: a request is using the grant now.
    public let active: Bool
    /// `PERSISTENT_GNT_WAS_ACTIVE`: used since the last purge.
    public let wasActive: Bool
    public init(active: Bool, wasActive: Bool) {
        self.active = active
        self.wasActive = wasActive
    }
}

public struct ObservedTree: Hashable, Sendable {
    public let nodes: [ObservedNode]
    public let root: Int?
    public let brokenLinks: [String]
    public init(nodes: [ObservedNode], root: Int?, brokenLinks: [String]) {
        self.nodes = nodes
        self.root = root
        self.brokenLinks = brokenLinks
    }
}

public struct ObservedConnection: Hashable, Sendable {
    public let persistentMode: Bool
    public let persistentCount: Int
    /// Changes whenever the backend's tree changes; lets the oracle skip re-reading an unchanged tree.
    public let treeVersion: UInt64
    public init(persistentMode: Bool, persistentCount: Int, treeVersion: UInt64) {
        self.persistentMode = persistentMode
        self.persistentCount = persistentCount
        self.treeVersion = treeVersion
    }
}

/// What the backend published during one event.
public enum Publication: Hashable, Sendable {
    case negotiated(vbd: UInt16, persistent: Bool)
    case unmapping(vbd: UInt16, id: UInt64, nrSegments: Int, bitmap: UInt16)
    case response(vbd: UInt16, BlkifResponse)
}

/// Everything the oracle may look at after an event: the environment's
/// state and the backend's published state. Never the backend's internals.
public protocol ObservedWorld {
    func connection(vbd: UInt16) -> ObservedConnection?
    func tree(vbd: UInt16) -> ObservedTree?
    func liveMappings(of domid: DomainID) -> [GrantMapping]
    /// How many mappings of `domid` are live: the cheap question a leak check
    /// asks first (the list only when the count disagrees).
    func liveMappingCount(of domid: DomainID) -> Int
    func mapping(handle: GrantHandle) -> GrantMapping?
    func liveAllocations(of owner: AllocationOwner) -> [String]
    func liveAllocationCount(of owner: AllocationOwner) -> Int
    func guestPage(domid: DomainID, gref: GrantRef) -> GuestPage?
    /// The eight sector tokens of a guest page: I/O moves whole segments, so
    /// the oracle reads a page at once rather than sector by sector.
    func guestTokens(_ page: GuestPage) -> SIMD8<UInt64>
    /// The tokens of disk sectors `first ..< first + tokens.count` of `vbd`,
    /// read into `tokens` at once: one call and one look for the disk per
    /// run of sectors, not one per sector or per page.
    func readDisk(vbd: UInt16, from first: UInt64, into tokens: UnsafeMutableBufferPointer<UInt64>)
    /// The value of the backend's own xenstore key `name` for the vbd (in
    /// `/local/domain/0/backend/vbd/DOMID/VBD`), nil when absent: what the
    /// frontend reads of the backend's advertisements.
    func backendKey(domid: DomainID, vbd: UInt16, _ name: String) -> String?
}
