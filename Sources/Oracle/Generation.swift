/// The design of blkback whose reference semantics the oracle predicts by
/// (docs/generations.md). The oracle's own name for it: the Oracle module
/// does not know the backend's types, so the harness maps the backend's
/// generation onto this one by name.
public enum OracleGeneration: String, CaseIterable, Sendable {
    /// The 2012 change (Linux 3.8–3.10): docs/design.md §6.
    case g2012
    /// The 2013 rework (Linux 3.11–4.18): docs/generations.md, G2013.
    case g2013
    /// Today's design (Linux 4.19 on): docs/generations.md, G2018.
    case g2018
}
