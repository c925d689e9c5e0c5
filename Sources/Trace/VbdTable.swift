/// Values keyed by vbd number, for `TraceState`'s per-event lookups.
///
/// Traces name small vbds (0, 1, 2, …), so numbers below `denseLimit` live
/// in an array indexed by the number itself: a lookup is a bounds check and a
/// load, where a dictionary hashed the key on every request and complete.
/// The array grows only to the largest small vbd seen. Any other number (a
/// fuzzer may name any UInt16) falls back to a dictionary, so memory stays
/// bounded whatever the trace says.
public struct VbdTable<Value: Sendable>: Sendable {
    /// Vbds below this are indexed directly; 64 slots cover every real guest.
    @usableFromInline static var denseLimit: Int { 64 }

    @usableFromInline var dense: [Value?] = []
    @usableFromInline var sparse: [UInt16: Value] = [:]

    public init() {}

    public subscript(vbd: UInt16) -> Value? {
        @inlinable get {
            let index = Int(vbd)
            if index < dense.count { return dense[index] }
            return index < Self.denseLimit ? nil : sparse[vbd]
        }
        set {
            let index = Int(vbd)
            guard index < Self.denseLimit else {
                sparse[vbd] = newValue
                return
            }
            if index >= dense.count {
                guard newValue != nil else { return }
                dense.append(contentsOf: repeatElement(nil, count: index + 1 - dense.count))
            }
            dense[index] = newValue
        }
    }

    /// Changes the value of `vbd` in place, if it has one: through the
    /// array's (or dictionary's) own accessor, so a value holding an array
    /// is not copied out and back (which would copy that array too).
    @inlinable
    public mutating func update(_ vbd: UInt16, _ change: (inout Value) -> Void) {
        let index = Int(vbd)
        if index < dense.count {
            if dense[index] != nil { change(&dense[index]!) }
        } else if index >= Self.denseLimit, sparse[vbd] != nil {
            change(&sparse[vbd]!)
        }
    }

    /// The vbds that have a value, in ascending order.
    public var vbds: [UInt16] {
        var numbers = dense.indices.filter { dense[$0] != nil }.map { UInt16($0) }
        numbers += sparse.keys.sorted()
        return numbers
    }
}

/// Equal when the same vbds have equal values (however the storage grew).
extension VbdTable: Equatable where Value: Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool {
        let vbds = lhs.vbds
        return vbds == rhs.vbds && vbds.allSatisfy { lhs[$0] == rhs[$0] }
    }
}
