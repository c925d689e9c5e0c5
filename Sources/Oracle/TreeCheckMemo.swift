import Trace

/// Per vbd, the tree versions (the reference's and the backend's) when the
/// tree was last checked, so that an event that changed neither tree is not
/// made to re-read the backend's.
///
/// Kept in a `VbdTable`: asked on every request, a dictionary hashed the vbd each time.
struct TreeCheckMemo {
    private struct Versions: Equatable {
        let reference: UInt64
        let observed: UInt64
    }

    private var lastChecked = VbdTable<Versions>()

    /// Whether the tree of `vbd` must be checked now; remembers these versions if so.
    /// Nothing changed if neither version moved and nothing unexpected was
    /// unmapped (an unmap can take a tree mapping away without changing the tree).
    mutating func needsCheck(vbd: UInt16, referenceVersion: UInt64, observedVersion: UInt64,
                             afterUnexpectedUnmaps: Bool) -> Bool {
        let versions = Versions(reference: referenceVersion, observed: observedVersion)
        if !afterUnexpectedUnmaps, lastChecked[vbd] == versions { return false }
        lastChecked[vbd] = versions
        return true
    }

    /// A connection made or torn down: its versions start again from zero.
    mutating func forget(vbd: UInt16) {
        lastChecked[vbd] = nil
    }
}
