import Backend
import Blkif
import FakeXen
import Oracle
import RedBlackTree

/// The oracle's window on one run: the environment's state and what the
/// backend publishes, converted to the oracle's own types.
///
/// A class made once per run and handed to the oracle for every event:
/// handing it over is one retain, where a value made per event retained
/// each object it holds. Its references are constants, so reading them
/// from the object needs no retain and no exclusivity check. The grant
/// table and guest memory are held as well as the environment: the oracle
/// reads them for every segment, and each reach through `xen` was a load more.
final class HarnessWorld: ObservedWorld {
    let xen: FakeXen
    let backend: Blkback
    private let grants: GrantTable
    private let memory: GuestMemory

    init(xen: FakeXen, backend: Blkback) {
        self.xen = xen
        self.backend = backend
        grants = xen.grants
        memory = xen.memory
    }

    func connection(vbd: UInt16) -> ObservedConnection? {
        backend.connectionSummary(vbd: vbd).map {
            ObservedConnection(persistentMode: $0.persistentMode, persistentCount: $0.persistentCount,
                               treeVersion: $0.treeVersion)
        }
    }

    func tree(vbd: UInt16) -> ObservedTree? {
        // Only G2013's grants have flags; a G2012 tree publishes none.
        let hasFlags = backend.variant.generation.mapsFirst
        return backend.publishedTree(vbd: vbd).map { tree in
            ObservedTree(nodes: tree.nodes.map {
                ObservedNode(gref: $0.gref, isRed: $0.color == .red, handle: $0.handle, left: $0.left, right: $0.right,
                             flags: hasFlags ? ObservedGrantFlags(active: $0.active, wasActive: $0.wasActive) : nil)
            }, root: tree.root, brokenLinks: tree.brokenLinks)
        }
    }

    func liveMappings(of domid: DomainID) -> [GrantMapping] { grants.liveMappings(of: domid) }
    func liveMappingCount(of domid: DomainID) -> Int { grants.liveMappingCount(of: domid) }
    func mapping(handle: GrantHandle) -> GrantMapping? { grants.mapping(handle: handle) }
    func liveAllocations(of owner: AllocationOwner) -> [String] { xen.kernel.liveAllocations(of: owner) }
    func liveAllocationCount(of owner: AllocationOwner) -> Int { xen.kernel.liveAllocationCount(of: owner) }
    func guestPage(domid: DomainID, gref: GrantRef) -> GuestPage? { grants.guestPage(domid: domid, gref: gref) }
    func guestTokens(_ page: GuestPage) -> SIMD8<UInt64> { memory.pageTokens(page) }
    func backendKey(domid: DomainID, vbd: UInt16, _ name: String) -> String? {
        xen.xenstore.read(Xenstore.backendDirectory(domid: domid, vbd: vbd) + "/" + name)
    }
    func readDisk(vbd: UInt16, from first: UInt64, into tokens: UnsafeMutableBufferPointer<UInt64>) {
        guard xen.readDisk(vbd: vbd, from: first, into: tokens) else {
            // No disk attached: every sector reads as new.
            for offset in tokens.indices { tokens[offset] = Ramdisk.initialToken(sector: first &+ UInt64(offset)) }
            return
        }
    }
}

extension Publication {
    init(_ publication: BackendPublication) {
        switch publication {
        case let .negotiated(vbd, persistent): self = .negotiated(vbd: vbd, persistent: persistent)
        case let .unmapping(vbd, id, _, nrSegments, bitmap):
            self = .unmapping(vbd: vbd, id: id, nrSegments: nrSegments, bitmap: bitmap)
        case let .response(vbd, response): self = .response(vbd: vbd, response)
        }
    }
}
