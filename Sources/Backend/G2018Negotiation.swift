import FakeXen

/// G2018's negotiation of persistent grants (docs/generations.md, G2018
/// "Negotiation"): the `feature_persistent` parameter, the backend device's
/// one-bit `vbd.feature_gnt_persistent` that outlives the frontend's
/// connections, and the three placements Linux 5.10 got wrong, each a quirk.
extension Blkback {
    /// `connect_ring`'s decision and `connect()`'s advertisement for a vbd
    /// not connected, with the device's creation (`xen_vbd_create`) where
    /// the hotplug order puts it on the vbd's first connect.
    func negotiateG2018(_ parameters: ConnectParameters) -> Bool {
        let frontend = Xenstore.frontendDirectory(domid: parameters.domid, vbd: parameters.vbd)
        let backend = Xenstore.backendDirectory(domid: parameters.domid, vbd: parameters.vbd)
        // `xenbus_read_unsigned(..., "feature-persistent", 0)`.
        let offered = xen.xenstore.readUnsigned(frontend + "/feature-persistent") ?? 0
        let parm = xen.parameters.featurePersistent && parameters.offersPersistent
        let device = UInt32(parameters.domid) << 16 | UInt32(parameters.vbd)
        let creating = g2018Devices[device] == nil
        // Zeroed at allocation.
        var feature = g2018Devices[device] ?? false
        // 5.10 set the field when the hotplug script created the vbd, which
        // may come after the frontend connected; the fix sets it when the
        // device is allocated, before any connect.
        let createdAfterNegotiation = variant.has(.hotplugOverridesNegotiation) && parameters.hotplugAfterConnect
        if creating && !createdAfterNegotiation { feature = parm }
        if variant.has(.negotiationSticksAtZero) {
            // 5.10: the frontend is read only while the field is set, and
            // stored into the one-bit field ("2" becomes 0).
            if feature { feature = offered & 1 == 1 }
        } else {
            feature = parm && offered != 0
        }
        if creating && createdAfterNegotiation { feature = parm }
        g2018Devices[device] = feature
        // Before 06ba5d2e943e the key said what was negotiated, not what is offered.
        let advertised = variant.has(.advertisesNegotiated) ? feature : parm
        xen.xenstore.write(backend + "/feature-persistent", advertised ? "1" : "0")
        return feature
    }
}
