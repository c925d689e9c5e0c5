/// A plain in-memory node store for tests and as a reference: addresses are indices into arrays,
/// nodes are never freed. Reading or writing an address that was never allocated does not trap:
/// reads return detached links (and the key of the nearest allocated node), writes are dropped,
/// and `strayAccesses` counts them. Only `key(of:)` on an empty store has nothing to return and
/// stops with a precondition failure.
///
/// Testing SPI: a real tree lives in a store of its user's (the backend's goes through the fake
/// kernel heap so that use-after-free is seen), so only `@_spi(Testing) import` reaches this one.
@_spi(Testing)
public struct ArrayNodeStore<Key: Comparable & Sendable>: RedBlackNodeStore, Sendable {
    public typealias Address = Int

    @usableFromInline
    internal var keys: [Key] = []
    @usableFromInline
    internal var linkTable: [RedBlackLinks<Int>] = []

    /// Accesses to addresses that were never allocated.
    public private(set) var strayAccesses = 0

    public init() {}

    /// Number of nodes allocated so far; valid addresses are `0..<count`.
    @inlinable
    public var count: Int { keys.count }

    /// Allocates a detached node holding `key` and returns its address.
    public mutating func allocate(key: Key) -> Int {
        keys.append(key)
        linkTable.append(.detached)
        return keys.count - 1
    }

    /// Overwrites a node's key (for tests that corrupt the order).
    public mutating func setKey(_ key: Key, of node: Int) {
        guard keys.indices.contains(node) else {
            strayAccesses += 1
            return
        }
        keys[node] = key
    }

    @inlinable
    public mutating func key(of node: Int) -> Key {
        if node >= 0 && node < keys.count { return keys[node] }
        noteStrayAccess()
        precondition(!keys.isEmpty, "ArrayNodeStore: key(of: \(node)) on an empty store")
        return keys[node < 0 ? 0 : keys.count - 1]
    }

    @inlinable
    public mutating func links(of node: Int) -> RedBlackLinks<Int> {
        if node >= 0 && node < linkTable.count { return linkTable[node] }
        noteStrayAccess()
        return .detached
    }

    @inlinable
    public mutating func setLinks(_ links: RedBlackLinks<Int>, of node: Int) {
        if node >= 0 && node < linkTable.count {
            linkTable[node] = links
        } else {
            noteStrayAccess()
        }
    }

    @usableFromInline
    internal mutating func noteStrayAccess() {
        strayAccesses += 1
    }
}
