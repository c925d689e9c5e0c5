/// A design of blkback's persistent grants (docs/generations.md): the
/// backend implements each one's algorithm, and the oracle predicts under the
/// generation of the backend it judges.
public enum Generation: String, CaseIterable, Sendable, Comparable {
    /// The 2012 change (Linux 3.8–3.10): `seed`, `fixed`, `fixed+QUIRK`.
    case g2012
    /// The 2013 rework (Linux 3.11–4.18): `g2013`, `g2013+QUIRK`, `linux-3.11`.
    case g2013
    /// Today's design (Linux 4.19 on): purge by idle time, the
    /// `feature_persistent` parameter: `g2018`, `g2018+QUIRK`, `linux-4.19`,
    /// `linux-5.10`, `linux-5.10.18`.
    case g2018

    public static func < (a: Generation, b: Generation) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// The name of the generation's defect-free backend, and the stem of its quirk selections.
    public var fixedName: String {
        switch self {
        case .g2012: "fixed"
        case .g2013: "g2013"
        case .g2018: "g2018"
        }
    }

    /// The backends that were shipped, by name, with the quirks each has;
    /// together they cover every quirk of the generation.
    public var shippedForms: [(name: String, quirks: Set<Quirk>)] {
        switch self {
        case .g2012: [("seed", Set(quirks))]
        case .g2013: [("linux-3.11", Set(quirks))]
        case .g2018:
            [
                // 4.19: before the XSA-365/362 fixes, before the parameter.
                ("linux-4.19", [.lostMapError, .staleGrantPointers, .bugOnHypercallError]),
                // 5.10: the parameter (aac8a70db24b) and its three bugs, and the XSAs.
                ("linux-5.10", [.lostMapError, .staleGrantPointers, .bugOnHypercallError,
                                .hotplugOverridesNegotiation, .negotiationSticksAtZero, .advertisesNegotiated]),
                // 5.10.18 to 5.10.27: the first XSA-365 fix and XSA-362's, with XSA-371 in them.
                ("linux-5.10.18", [.activeGrantZapped, .hotplugOverridesNegotiation, .negotiationSticksAtZero,
                                   .advertisesNegotiated]),
            ]
        }
    }

    /// From the 2013 rework on: map first and persist after, request slots,
    /// a page pool, indirect descriptors, a thread loop with a purge.
    public var mapsFirst: Bool { self >= .g2013 }

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
    /// G2018: the first XSA-365 fix zaps the pointers of the ENOMEM batch's
    /// persistent hits, which stay ACTIVE for ever (XSA-371).
    case activeGrantZapped = "active-grant-zapped"
    /// G2018 (5.10): `xen_vbd_create` sets the vbd's feature from the
    /// parameter, overwriting a negotiation that ran before it (fc9be616bb8f).
    case hotplugOverridesNegotiation = "hotplug-overrides-negotiation"
    /// G2018 (5.10): a connect negotiates only if the vbd's feature is still
    /// set, so once 0 it stays 0 until the vbd is re-created (e94c6101e151).
    case negotiationSticksAtZero = "negotiation-sticks-at-zero"
    /// G2018 (5.10): `feature-persistent` advertises the negotiated value,
    /// not the parameter (06ba5d2e943e).
    case advertisesNegotiated = "advertises-negotiated"

    public static func < (a: Quirk, b: Quirk) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// The generations whose code has this defect.
    public var generations: Set<Generation> {
        switch self {
        case .handleZeroUnmapped, .persistentKey, .teardownNextAfterFree, .teardownKeepsPages, .duplicateDangles,
             .enomemNoRollback, .freeBeforeDrain:
            [.g2012]
        case .failedMapKeepsPage, .responsePaddingLeak:
            [.g2012, .g2013]
        case .bugOnHypercallError:
            [.g2012, .g2013, .g2018]
        case .lostMapError, .staleGrantPointers:
            [.g2013, .g2018]
        case .indirectDoubleFetch, .teardownPoolLeak:
            [.g2013]
        case .activeGrantZapped, .hotplugOverridesNegotiation, .negotiationSticksAtZero, .advertisesNegotiated:
            [.g2018]
        }
    }

    /// This quirk's bit in `BackendVariant`'s mask (32 quirks fit a `UInt32`).
    fileprivate var bit: UInt32 {
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
        case .activeGrantZapped: 1 << 14
        case .hotplugOverridesNegotiation: 1 << 15
        case .negotiationSticksAtZero: 1 << 16
        case .advertisesNegotiated: 1 << 17
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
    private let mask: UInt32
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
    public static let g2018 = BackendVariant(generation: .g2018, quirks: [])

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
        Generation.allCases.map { generation in
            (generation.shippedForms.map(\.name) + [generation.fixedName]).joined(separator: ", ")
                + " or \(generation.fixedName)+QUIRK[+QUIRK…]"
        }.joined(separator: "; ")
    }

    public init(name: String) throws(NameError) {
        for generation in Generation.allCases {
            if let shipped = generation.shippedForms.first(where: { $0.name == name }) {
                self.init(generation: generation, quirks: shipped.quirks)
                return
            }
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

    /// The canonical name: a shipped backend's name when the quirks are
    /// exactly its set, else the defect-free name plus quirks in a fixed order.
    private static func canonicalName(generation: Generation, quirks: Set<Quirk>) -> String {
        if !quirks.isEmpty, let shipped = generation.shippedForms.first(where: { $0.quirks == quirks }) {
            return shipped.name
        }
        return ([generation.fixedName] + quirks.sorted().map(\.rawValue)).joined(separator: "+")
    }

    public var description: String { name }

    public func has(_ quirk: Quirk) -> Bool { mask & quirk.bit != 0 }
}
