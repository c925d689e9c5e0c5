/// A design of blkback's persistent grants (docs/generations.md): the
/// backend implements each one's algorithm, and the oracle predicts under the
/// generation of the backend it judges.
public enum Generation: String, CaseIterable, Sendable, Comparable {
    /// The 2012 change (Linux 3.8–3.10): `seed`, `fixed`, `fixed+QUIRK`.
    case g2012
    /// The 2013 rework (Linux 3.11–4.18): `g2013`, `g2013+QUIRK`, `linux-3.11`.
    case g2013

    public static func < (a: Generation, b: Generation) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// The name of the generation's defect-free backend, and the stem of its quirk selections.
    public var fixedName: String {
        switch self {
        case .g2012: "fixed"
        case .g2013: "g2013"
        }
    }

    /// The name of the backend with every quirk of the generation: what was shipped.
    public var shippedName: String {
        switch self {
        case .g2012: "seed"
        case .g2013: "linux-3.11"
        }
    }

    /// The generation's quirks, in canonical order.
    public var quirks: [Quirk] { Quirk.allCases.filter { $0.generations.contains(self) } }
}

/// The defects of each generation, each a named behaviour that can be
/// switched on alone. Each is consulted at exactly the one place where the
/// shipped logic differs from the fixed logic; nothing else in the backend
/// knows about quirks.
public enum Quirk: String, CaseIterable, Sendable, Comparable {
    /// A record with handle 0 is taken for "not mapped yet", though Xen hands out 0 first.
    case handleZeroUnmapped = "handle-zero-unmapped"
    /// Connect reads the frontend key `feature-persistent-grants` instead of `feature-persistent`.
    case persistentKey = "persistent-key"
    /// Teardown takes the next node from the node it has just erased and freed.
    case teardownNextAfterFree = "teardown-next-after-free"
    /// Teardown unmaps and frees records but never frees their pages.
    case teardownKeepsPages = "teardown-keeps-pages"
    /// A failed map leaks its page: G2012 frees the new record but not its
    /// page; G2013 does not put the pool page back.
    case failedMapKeepsPage = "failed-map-keeps-page"
    /// Other segments that found a record whose new map failed keep using it.
    case duplicateDangles = "duplicate-dangles"
    /// ENOMEM mid-request returns at once: no rollback, stale unmap bitmap.
    case enomemNoRollback = "enomem-no-rollback"
    /// A failed map hypercall is `BUG_ON` (XSA-362 in G2013).
    case bugOnHypercallError = "bug-on-hypercall-error"
    /// Disconnect unmaps persistent grants before in-flight requests have completed.
    case freeBeforeDrain = "free-before-drain"
    /// A response is built on the stack and copied whole into the ring slot,
    /// padding included (XSA-216; fixed in 2017, so the seed has it too).
    case responsePaddingLeak = "response-padding-leak"
    /// G2013: a map failure in one batch is forgotten once a later batch maps (XSA-365).
    case lostMapError = "lost-map-error"
    /// G2013: on ENOMEM the map step returns at once, leaving the slot's
    /// previous pointers and handles past the failure (XSA-365, f9bd84a8a845).
    case staleGrantPointers = "stale-grant-pointers"
    /// G2013: indirect descriptors' sectors are read once to use, again to check (XSA-155).
    case indirectDoubleFetch = "indirect-double-fetch"
    /// G2013: teardown empties the page pool before unmapping the grants, whose pages then stay in it.
    case teardownPoolLeak = "teardown-pool-leak"

    public static func < (a: Quirk, b: Quirk) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// The generations whose code has this defect.
    public var generations: Set<Generation> {
        switch self {
        case .handleZeroUnmapped, .persistentKey, .teardownNextAfterFree, .teardownKeepsPages, .duplicateDangles,
             .enomemNoRollback, .freeBeforeDrain:
            [.g2012]
        case .failedMapKeepsPage, .bugOnHypercallError, .responsePaddingLeak:
            [.g2012, .g2013]
        case .lostMapError, .staleGrantPointers, .indirectDoubleFetch, .teardownPoolLeak:
            [.g2013]
        }
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
        case .lostMapError: 1 << 10
        case .staleGrantPointers: 1 << 11
        case .indirectDoubleFetch: 1 << 12
        case .teardownPoolLeak: 1 << 13
        }
    }
}

/// A backend chosen by name: per generation, the defect-free form
/// (`fixed`, `g2013`), the shipped form with every quirk (`seed`,
/// `linux-3.11`) or the defect-free form with some (`fixed+QUIRK[+QUIRK…]`,
/// `g2013+QUIRK…`).
public struct BackendVariant: Hashable, Sendable, CustomStringConvertible {
    public let generation: Generation
    public let quirks: Set<Quirk>
    /// `quirks` as bits: `has` runs per segment, and hashing a quirk means
    /// hashing its string raw value.
    private let mask: UInt16
    /// The canonical name, built once: every run and every `expect violation
    /// … backend=NAME` line asks for it, and building it sorts and joins strings.
    public let name: String

    /// Quirks must belong to the generation (the name parser refuses others).
    public init(generation: Generation = .g2012, quirks: Set<Quirk>) {
        precondition(quirks.allSatisfy { $0.generations.contains(generation) },
                     "a quirk of another generation in a \(generation) backend")
        self.generation = generation
        self.quirks = quirks
        mask = quirks.reduce(0) { $0 | $1.bit }
        name = Self.canonicalName(generation: generation, quirks: quirks)
    }

    // The name follows from the generation and quirks, so equality and hashing look at those alone.
    public static func == (a: BackendVariant, b: BackendVariant) -> Bool {
        a.mask == b.mask && a.generation == b.generation
    }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(mask)
        hasher.combine(generation)
    }

    public static let seed = BackendVariant(generation: .g2012, quirks: Set(Generation.g2012.quirks))
    public static let fixed = BackendVariant(generation: .g2012, quirks: [])
    public static let g2013 = BackendVariant(generation: .g2013, quirks: [])
    public static let linux311 = BackendVariant(generation: .g2013, quirks: Set(Generation.g2013.quirks))

    /// Every defect-free backend and every single-quirk one, generation by generation: what `replay matrix` runs.
    public static var matrix: [BackendVariant] {
        Generation.allCases.flatMap { generation in
            [BackendVariant(generation: generation, quirks: [])]
                + generation.quirks.map { BackendVariant(generation: generation, quirks: [$0]) }
        }
    }

    public enum NameError: Error, Equatable, CustomStringConvertible {
        case unknown(name: String)
        case unknownQuirk(name: String, quirk: String)
        case quirkOfAnotherGeneration(name: String, quirk: String, generation: Generation)
        public var description: String {
            switch self {
            case .unknown(let name):
                "unknown backend '\(name)'; expected " + BackendVariant.nameForms
            case .unknownQuirk(let name, let quirk):
                "unknown quirk '\(quirk)' in backend '\(name)'; expected one of " + Quirk.allCases.map(\.rawValue).joined(separator: ", ")
            case .quirkOfAnotherGeneration(let name, let quirk, let generation):
                "quirk '\(quirk)' in backend '\(name)' is not a defect of \(generation); expected one of "
                    + generation.quirks.map(\.rawValue).joined(separator: ", ")
            }
        }
    }

    /// The forms a backend name takes, for messages and help.
    public static var nameForms: String {
        Generation.allCases.map { "\($0.shippedName), \($0.fixedName) or \($0.fixedName)+QUIRK[+QUIRK…]" }
            .joined(separator: "; ")
    }

    public init(name: String) throws(NameError) {
        if let shipped = Generation.allCases.first(where: { $0.shippedName == name }) {
            self.init(generation: shipped, quirks: Set(shipped.quirks))
            return
        }
        let parts = name.split(separator: "+", omittingEmptySubsequences: false).map(String.init)
        guard let generation = Generation.allCases.first(where: { $0.fixedName == parts.first }) else {
            throw .unknown(name: name)
        }
        var quirks: Set<Quirk> = []
        for word in parts.dropFirst() {
            guard let quirk = Quirk(rawValue: word) else { throw .unknownQuirk(name: name, quirk: word) }
            guard quirk.generations.contains(generation) else {
                throw .quirkOfAnotherGeneration(name: name, quirk: word, generation: generation)
            }
            quirks.insert(quirk)
        }
        self.init(generation: generation, quirks: quirks)
    }

    /// The canonical name: the shipped name when every quirk of the
    /// generation is on, else the defect-free name plus quirks in a fixed order.
    private static func canonicalName(generation: Generation, quirks: Set<Quirk>) -> String {
        if quirks.count == generation.quirks.count && !quirks.isEmpty { return generation.shippedName }
        return ([generation.fixedName] + quirks.sorted().map(\.rawValue)).joined(separator: "+")
    }

    public var description: String { name }

    public func has(_ quirk: Quirk) -> Bool { mask & quirk.bit != 0 }
}
