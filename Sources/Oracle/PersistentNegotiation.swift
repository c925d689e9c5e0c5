/// What a connect of a vbd not connected decides about persistent grants,
/// and what the backend's own `feature-persistent` key must then read.
struct PersistentNegotiation: Hashable {
    /// The connection runs in persistent mode.
    let persistent: Bool
    /// The backend's side of the decision (reported with a wrong mode).
    let backendOffers: Bool
    /// The backend's `feature-persistent` key, nil when it writes none.
    let advertised: String?

    /// docs/design.md §6.1, kept by G2013: the backend offers persistent
    /// grants when the connect says so, advertises "1" only then, and the
    /// mode is on when the frontend's key reads exactly 1 under `%u`.
    static func original(backendPersistent: Bool, frontendKey: String?) -> Self {
        let frontend = frontendKey.flatMap(ReferenceModel.scanUnsigned)
        return Self(persistent: backendPersistent && frontend == 1, backendOffers: backendPersistent,
                    advertised: backendPersistent ? "1" : nil)
    }

    /// docs/generations.md, G2018 "Negotiation", today's form
    /// (06ba5d2e943e): `parm` is the parameter `feature_persistent` and the
    /// connect's `backend-persistent=` both on; the mode is on when `parm`
    /// and the frontend's key reads as anything but 0 under `%u` (absent
    /// or unreadable reads 0, `xenbus_read_unsigned`'s default), so "2" is
    /// on; the backend writes its key as `parm`, "1" or "0", always.
    static func today(featureParameter: Bool, backendPersistent: Bool, frontendKey: String?) -> Self {
        let parm = featureParameter && backendPersistent
        let frontend = frontendKey.flatMap(ReferenceModel.scanUnsigned) ?? 0
        return Self(persistent: parm && frontend != 0, backendOffers: parm, advertised: parm ? "1" : "0")
    }
}
