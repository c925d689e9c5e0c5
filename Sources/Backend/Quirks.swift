/// The seed's defects, each a named behaviour that can be switched on alone.
/// Each is consulted at exactly the one place where the seed's logic differs
/// from the fixed logic; nothing else in the backend knows about quirks.
public enum Quirk: String, CaseIterable, Sendable, Comparable {
    /// A record with handle 0 is taken for "not mapped yet", though Xen hands out 0 first.
    case handleZeroUnmapped = "handle-zero-unmapped"
    /// Connect reads the frontend key `feature-persistent-grants` instead of `feature-persistent`.
    case persistentKey = "persistent-key"
    /// Teardown takes the next node from the node it has just erased and freed.
    case teardownNextAfterFree = "teardown-next-after-free"
    /// Teardown unmaps and frees records but never frees their pages.
    case teardownKeepsPages = "teardown-keeps-pages"
    /// A failed new persistent map frees the record but not its page.
    case failedMapKeepsPage = "failed-map-keeps-page"
    /// Other segments that found a record whose new map failed keep using it.
    case duplicateDangles = "duplicate-dangles"
    /// ENOMEM mid-request returns at once: no rollback, stale unmap bitmap.
    case enomemNoRollback = "enomem-no-rollback"
    /// A failed map hypercall is `BUG_ON`.
    case bugOnHypercallError = "bug-on-hypercall-error"
    /// Disconnect unmaps persistent grants before in-flight requests have completed.
    case freeBeforeDrain = "free-before-drain"
    /// A response is built on the stack and copied whole into the ring slot,
    /// padding included (XSA-216; fixed in 2017, so the seed has it too).
    case responsePaddingLeak = "response-padding-leak"

    public static func < (a: Quirk, b: Quirk) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// This quirk's bit in `BackendVariant`'s mask (sixteen quirks fit a `UInt16`).
    fileprivate var bit: UInt16 {
        switch self {
        case .handleZeroUnmapped: 1 << 0
        case .persistentKey: 1 << 1
        case .teardownNextAfterFree: 1 << 2
        case .teardownKeepsPages: 1 << 3
        case .failedMapKeepsPage: 1 << 4
        case .duplicateDangles: 1 << 5
        case .enomemNoRollback: 1 << 6
        case .bugOnHypercallError: 1 << 7
        case .freeBeforeDrain: 1 << 8
        case .responsePaddingLeak: 1 << 9
        }
    }
}

/// A backend chosen by name: `seed` (every quirk), `fixed` (none) or
/// `fixed+QUIRK[+QUIRK…]`.
public struct BackendVariant: Hashable, Sendable, CustomStringConvertible {
    public let quirks: Set<Quirk>
    /// `quirks` as bits: `has` runs per segment, and hashing a quirk means
    /// hashing its string raw value.
    private let mask: UInt16
    /// The canonical name, built once: every run and every `expect violation
    /// … backend=NAME` line asks for it, and building it sorts and joins strings.
    public let name: String

    public init(quirks: Set<Quirk>) {
        self.quirks = quirks
        mask = quirks.reduce(0) { $0 | $1.bit }
        name = Self.canonicalName(of: quirks)
    }

    // The name follows from the quirks, so equality and hashing look at the quirks alone.
    public static func == (a: BackendVariant, b: BackendVariant) -> Bool { a.mask == b.mask }
    public func hash(into hasher: inout Hasher) { hasher.combine(mask) }

    public static let seed = BackendVariant(quirks: Set(Quirk.allCases))
    public static let fixed = BackendVariant(quirks: [])

    public enum NameError: Error, Equatable, CustomStringConvertible {
        case unknown(name: String)
        case unknownQuirk(name: String, quirk: String)
        public var description: String {
            switch self {
            case .unknown(let name):
                "unknown backend '\(name)'; expected seed, fixed or fixed+QUIRK[+QUIRK…]"
            case .unknownQuirk(let name, let quirk):
                "unknown quirk '\(quirk)' in backend '\(name)'; expected one of " + Quirk.allCases.map(\.rawValue).joined(separator: ", ")
            }
        }
    }

    public init(name: String) throws(NameError) {
        if name == "seed" { self = .seed; return }
        let parts = name.split(separator: "+", omittingEmptySubsequences: false).map(String.init)
        guard parts.first == "fixed" else { throw .unknown(name: name) }
        var quirks: Set<Quirk> = []
        for word in parts.dropFirst() {
            guard let quirk = Quirk(rawValue: word) else { throw .unknownQuirk(name: name, quirk: word) }
            quirks.insert(quirk)
        }
        self.init(quirks: quirks)
    }

    /// The canonical name: `seed` when every quirk is on, else `fixed` plus quirks in a fixed order.
    private static func canonicalName(of quirks: Set<Quirk>) -> String {
        if quirks.count == Quirk.allCases.count { return "seed" }
        return (["fixed"] + quirks.sorted().map(\.rawValue)).joined(separator: "+")
    }

    public var description: String { name }

    public func has(_ quirk: Quirk) -> Bool { mask & quirk.bit != 0 }
}
