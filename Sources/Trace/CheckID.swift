/// The stable check ids of docs/design.md §7, as reports and `expect violation` name them.
public enum CheckID: String, CaseIterable, Sendable {
    case treeCount = "tree-count"
    case treeOrder = "tree-order"
    case treeBalance = "tree-balance"
    case treeContents = "tree-contents"
    case treeMapping = "tree-mapping"
    case grantLimit = "grant-limit"
    case mapOps = "map-ops"
    case unmapBitmap = "unmap-bitmap"
    case unmapOps = "unmap-ops"
    case requestLeak = "request-leak"
    case response = "response"
    case data = "data"
    case accessUnmapped = "access-unmapped"
    case unmapInUse = "unmap-in-use"
    case teardown = "teardown"
    case useAfterFree = "use-after-free"
    case doubleFree = "double-free"
    case panic = "panic"
    case negotiation = "negotiation"
    case overflowAlert = "overflow-alert"
    case expect = "expect"
    // Added later, at the end, so that the ids above keep their positions
    // (the minimizer's child processes report a check by its position).
    case responseSlot = "response-slot"
    case hostLeak = "host-leak"
    case doubleFetch = "double-fetch"
}
