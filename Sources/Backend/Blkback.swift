import Blkif
import FakeXen

/// What the backend makes public for observers (the oracle): it mirrors what
/// a real blkback shows through the ring, xenstore and debug state.
public enum BackendPublication: Hashable, Sendable {
    /// Persistent mode as decided at connect.
    case negotiated(vbd: UInt16, persistent: Bool)
    /// `xen_blkbk_unmap` is about to run for a request: its bitmap as it stands.
    case unmapping(vbd: UInt16, id: UInt64, slot: Int, nrSegments: Int, bitmap: UInt16)
    /// A response pushed on the ring, decoded from the bytes written there.
    case response(vbd: UInt16, BlkifResponse)
}

/// What the backend published since the last drain.
struct PublicationQueue {
    private var pending: [BackendPublication] = []
    /// What the previous drain handed out. Once its caller has let go of it,
    /// the next drain reuses it (and its capacity) for new publications.
    private var drained: [BackendPublication] = []

    mutating func append(_ publication: BackendPublication) { pending.append(publication) }

    mutating func drain() -> [BackendPublication] {
        guard !pending.isEmpty else { return [] }
        swap(&pending, &drained)
        pending.removeAll(keepingCapacity: true)
        return drained
    }
}

/// blkback with persistent grants, as the 2012 change wrote it, minus the
/// quirks that are switched off. It acts on the world only through `FakeXen`.
public final class Blkback {
    public let variant: BackendVariant
    let xen: FakeXen
    let heap: KernelHeap<PersistentGrant>
    // Unchecked exclusivity: read (a scan for a vbd) or changed (a connect
    // or disconnect) in one statement that calls nothing outside the table,
    // so no two accesses can overlap; it is read on every ring event, where
    // the runtime check cost more than the scan.
    @exclusivity(unchecked) var connections = ConnectionTable()
    private var reservedPages: [UInt16: ReservedPages] = [:]
    /// G2018: each backend device's `vbd.feature_gnt_persistent`, by
    /// (domain, vbd), from its creation on; it outlives the frontend's
    /// connections (docs/generations.md, G2018 "Negotiation").
    var g2018Devices: [UInt32: Bool] = [:]
    /// Publications not yet drained, in one value so that a drain or a
    /// publish is one access to this object, not one per array touched.
    // Unchecked exclusivity: each publish is one append and each drain one
    // call into the queue, neither of which calls out, so no two accesses
    // can overlap; there are two publishes per request.
    @exclusivity(unchecked) private var publications = PublicationQueue()
    /// The stack `publishedTree` walks with, kept so that its storage is reused.
    var publishingSpine: [PublishingSpineEntry] = []
    /// Set once `BUG()` fired: a crashed host does nothing more.
    // Unchecked exclusivity: read or set in one statement, never passed inout.
    @exclusivity(unchecked) public private(set) var panic: KernelPanic?

    public init(variant: BackendVariant, xen: FakeXen) {
        self.variant = variant
        self.xen = xen
        self.heap = xen.kernel.makeHeap(of: PersistentGrant.self, name: "persistent_gnt")
    }

    public func drainPublications() -> [BackendPublication] { publications.drain() }

    func publish(_ publication: BackendPublication) { publications.append(publication) }

    public func isConnected(vbd: UInt16) -> Bool { connections[vbd] != nil }

    /// Runs a step unless the host is down; a `BUG()` inside is kept as the panic.
    private func guarded(_ body: () throws(KernelPanic) -> Void) {
        guard panic == nil else { return }
        do { try body() } catch { panic = error }
    }

    // MARK: xenbus

    /// `connect_ring` and `connect`: negotiate, advertise, bring the ring up.
    public func connect(_ parameters: ConnectParameters) {
        if variant.generation.mapsFirst { return guarded { () throws(KernelPanic) in connectG2013(parameters) } }
        guarded { () throws(KernelPanic) in
            let vbd = parameters.vbd
            // A second Connected for a live connection changes nothing, as in xenbus.
            guard connections[vbd] == nil else { return }
            let key = variant.has(.persistentKey) ? "feature-persistent-grants" : "feature-persistent"
            let persistent = negotiatePersistentGrants(parameters, frontendKey: key)
            let device = xen.attachDisk(vbd: vbd, sectors: parameters.sectors)
            let ringPages = parameters.ringProtocol.ringSize * Blkif.maxSegmentsPerRequest
            if (reservedPages[vbd]?.count ?? 0) < ringPages {
                reservedPages[vbd] = xen.kernel.pages.reserveRun(count: ringPages)
            }
            let ring = SharedRing(vbd: vbd, ringProtocol: parameters.ringProtocol, log: xen.log)
            connections.add(Connection(parameters: parameters, persistentMode: persistent, device: device, ring: ring,
                                       reservedPages: reservedPages[vbd]!, heap: heap))
            publish(.negotiated(vbd: vbd, persistent: persistent))
        }
    }

    /// `connect()`'s advertisement and `connect_ring`'s reading of the
    /// frontend: persistent grants are used when this backend offers them
    /// and the frontend's `frontendKey` reads as 1 under `%u`.
    func negotiatePersistentGrants(_ parameters: ConnectParameters, frontendKey key: String) -> Bool {
        let frontend = Xenstore.frontendDirectory(domid: parameters.domid, vbd: parameters.vbd)
        let backend = Xenstore.backendDirectory(domid: parameters.domid, vbd: parameters.vbd)
        if parameters.offersPersistent { xen.xenstore.write(backend + "/feature-persistent", "1") }
        return parameters.offersPersistent && xen.xenstore.readUnsigned(frontend + "/" + key) == 1
    }

    /// The frontend closes: in-flight I/O is drained and answered, then every
    /// persistent grant is unmapped and freed.
    public func disconnect(vbd: UInt16) {
        guarded { () throws(KernelPanic) in
            guard let connection = connections[vbd] else { return }
            if variant.generation.mapsFirst {
                try disconnectG2013(connection)
                xen.xenstore.removeDirectory(Xenstore.backendDirectory(domid: connection.parameters.domid, vbd: vbd))
                connections.remove(vbd: vbd)
                return
            }
            // One access to the connection's state for the whole teardown.
            try connection.withState { (state: inout ConnectionState) throws(KernelPanic) in
                if variant.has(.freeBeforeDrain) {
                    try freePersistentGrants(in: &state.persistentGrants)
                    try drainInFlight(connection, &state)
                } else {
                    try drainInFlight(connection, &state)
                    try freePersistentGrants(in: &state.persistentGrants)
                }
            }
            xen.xenstore.removeDirectory(Xenstore.backendDirectory(domid: connection.parameters.domid, vbd: vbd))
            connections.remove(vbd: vbd)
        }
    }

    private func drainInFlight(_ connection: Connection, _ state: inout ConnectionState) throws(KernelPanic) {
        while let slot = state.inFlight.first {
            try finishIO(connection, &state, slot: slot)
        }
    }

    // MARK: the ring

    /// The frontend put `bytes` in a ring slot and notified. A G2013
    /// backend reads a slot whose operation is `BLKIF_OP_INDIRECT` in the
    /// indirect layout; G2012 knows only the read/write one.
    public func submit(vbd: UInt16, bytes: [UInt8], hold: Bool) {
        guarded { () throws(KernelPanic) in
            guard let connection = connections[vbd] else { return }
            let ringProtocol = connection.parameters.ringProtocol
            if variant.generation.mapsFirst, let indirect = (try? ringProtocol.decodeIndirectRequest(bytes)) ?? nil {
                return try submitG2013(connection, .indirect(indirect), hold: hold)
            }
            guard let request = try? ringProtocol.decodeRequest(bytes) else { return }
            if variant.generation.mapsFirst { return try submitG2013(connection, .direct(request), hold: hold) }
            try dispatch(connection, request, hold: hold)
        }
    }

    /// The frontend put a request on the ring: `request` is what the slot's
    /// bytes decode to in this vbd's ring protocol, for a caller that holds
    /// it decoded already (the harness), so the slot is not decoded twice.
    /// (A slot whose operation is indirect goes through `submit(vbd:bytes:hold:)`.)
    public func submit(vbd: UInt16, request: BlkifRequest, hold: Bool) {
        guarded { () throws(KernelPanic) in
            guard let connection = connections[vbd] else { return }
            if variant.generation.mapsFirst { return try submitG2013(connection, .direct(request), hold: hold) }
            try dispatch(connection, request, hold: hold)
        }
    }

    /// The frontend put an indirect request on the ring (its descriptors
    /// already in its pages): read in the vbd's protocol as its generation
    /// reads the slot.
    public func submit(vbd: UInt16, indirect: BlkifIndirectRequest, hold: Bool) {
        guard variant.generation == .g2012 else {
            return guarded { () throws(KernelPanic) in
                guard let connection = connections[vbd] else { return }
                try submitG2013(connection, .indirect(indirect), hold: hold)
            }
        }
        // G2012 knows no indirect layout: it reads the slot's bytes as a read/write request.
        guard let connection = connections[vbd] else { return }
        submit(vbd: vbd, bytes: connection.parameters.ringProtocol.encode(indirect), hold: hold)
    }

    /// Time passed (the trace's `tick`; the clock has moved already): each
    /// connection's thread wakes. G2012 has no periodic work.
    public func timePassed() {
        guard variant.generation.mapsFirst else { return }
        guarded { () throws(KernelPanic) in try timePassedG2013() }
    }

    /// The device finishes the I/O of the oldest in-flight request with this id.
    public func complete(vbd: UInt16, id: UInt64) {
        guarded { () throws(KernelPanic) in
            guard let connection = connections[vbd] else { return }
            if variant.generation.mapsFirst { return completeG2013(connection, id: id) }
            try connection.withState { (state: inout ConnectionState) throws(KernelPanic) in
                guard let slot = state.oldestInFlight(id: id) else { return }
                try finishIO(connection, &state, slot: slot)
            }
        }
    }

    /// `make_response`: the response goes into the ring's next slot and is
    /// pushed; the frontend reads it back from the slot.
    func respond(_ connection: Connection, id: UInt64, operation: UInt8, status: BlkifResponseStatus) {
        let ring = connection.ring
        if variant.has(.responsePaddingLeak) {
            // Before 2017: a native `struct blkif_response` on the stack, its
            // three fields set, all sizeof() bytes copied into the slot,
            // whatever the ring's ABI.
            let native = BlkifProtocol.native.response
            var frame = StackFrame(size: native.size)
            frame.store(id, at: native.id)
            frame.store(operation, at: native.operation)
            frame.store(status.rawValue, at: native.status)
            ring.copyToResponseSlot(frame)
        } else {
            let layout = ring.ringProtocol.response
            ring.storeResponseField(id, at: layout.id)
            ring.storeResponseField(operation, at: layout.operation)
            ring.storeResponseField(status.rawValue, at: layout.status)
        }
        let index = ring.responseProducer
        ring.pushResponse()
        publish(.response(vbd: connection.parameters.vbd, ring.response(at: index)))
    }

    private func dispatch(_ connection: Connection, _ request: BlkifRequest, hold: Bool) throws(KernelPanic) {
        guard let operation = request.knownOperation else {
            return respond(connection, id: request.id, operation: request.operation, status: .error)
        }
        switch operation {
        case .read, .write, .writeBarrier, .flushDiskcache:
            try dispatchReadWrite(connection, request, operation: operation, hold: hold)
        case .discard:
            dispatchDiscard(connection, request)
        case .reserved, .indirect:
            respond(connection, id: request.id, operation: request.operation, status: .error)
        }
    }

    private func dispatchDiscard(_ connection: Connection, _ request: BlkifRequest) {
        let parameters = connection.parameters
        guard parameters.discard else {
            return respond(connection, id: request.id, operation: request.operation, status: .eopnotsupp)
        }
        let (end, overflow) = request.sectorNumber.addingReportingOverflow(request.discardSectors)
        guard !overflow, end <= parameters.sectors else {
            return respond(connection, id: request.id, operation: request.operation, status: .error)
        }
        connection.device.discard(sector: request.sectorNumber, count: request.discardSectors)
        respond(connection, id: request.id, operation: request.operation, status: .okay)
    }

    /// `dispatch_rw_block_io`: validate, map, submit.
    private func dispatchReadWrite(_ connection: Connection, _ request: BlkifRequest, operation: BlkifOperation,
                                   hold: Bool) throws(KernelPanic) {
        // A method, not a closure over `request`: the closure's context
        // retained and released the request's segments on every request.
        func fail(_ status: BlkifResponseStatus) {
            respond(connection, id: request.id, operation: request.operation, status: status)
        }
        let nseg = Int(request.nrSegments)
        guard (nseg > 0 || operation.isFlushLike) && nseg <= Blkif.maxSegmentsPerRequest else { return fail(.error) }
        let segments = request.effectiveSegments
        guard segments.allSatisfy(\.isWellFormed) else { return fail(.error) }
        let total = UInt64(segments.reduce(0) { $0 + $1.sectorCount })
        let (end, overflow) = request.sectorNumber.addingReportingOverflow(total)
        // Like vbd_translate: a request that moves no sectors has no range to check.
        guard total == 0 || (!overflow && end <= connection.parameters.sectors) else { return fail(.error) }
        if operation.isFlushLike && !connection.parameters.flush { return fail(.eopnotsupp) }
        // One access to the connection's state for the rest of the request.
        try connection.withState { (state: inout ConnectionState) throws(KernelPanic) in
            guard let slot = state.takeSlot() else { return fail(.error) }
            try mapAndSubmit(connection, &state, request, slot: slot, isRead: operation == .read, segments: segments,
                             hold: hold)
        }
    }

    /// The rest of `dispatch_rw_block_io` once a slot is taken: map, then submit or fail.
    private func mapAndSubmit(_ connection: Connection, _ state: inout ConnectionState, _ request: BlkifRequest,
                              slot: Int, isRead: Bool, segments: [BlkifSegment], hold: Bool) throws(KernelPanic) {
        state.slots[slot].begin(id: request.id, operation: request.operation, nrPages: Int(request.nrSegments))
        var mapper = SegmentMapper(backend: self, connection: connection, slot: slot, segments: segments,
                                   isRead: isRead)
        let outcome = try mapper.map(&state)
        guard outcome == .mapped else {
            // fail_flush: unmap what the bitmap names, answer error.
            try unmapRequest(connection, &state, slot: slot)
            state.releaseSlot(slot)
            return respond(connection, id: request.id, operation: request.operation, status: .error)
        }
        // Segment i does its I/O through scratch page i.
        let bio = connection.device.submit(isRead ? .read : .write, sector: request.sectorNumber,
                                           pages: state.mappingScratch.pages, segments: segments)
        state.slots[slot].bio = bio
        state.inFlight.append(slot)
        if !hold { try finishIO(connection, &state, slot: slot) }
    }

    /// The bio's end-io: data moves, non-persistent grants are unmapped, the request is answered.
    private func finishIO(_ connection: Connection, _ state: inout ConnectionState, slot: Int) throws(KernelPanic) {
        // A slot is in flight at most once: it is appended when its request is
        // submitted and is taken again only after it is released below.
        if let position = state.inFlight.firstIndex(of: slot) { state.inFlight.remove(at: position) }
        let bio = state.slots[slot].bio
        state.slots[slot].bio = nil
        if let bio { connection.device.complete(bio) }
        let (id, operation) = try unmapRequest(connection, &state, slot: slot)
        state.releaseSlot(slot)
        respond(connection, id: id, operation: operation, status: .okay)
    }

    /// `xen_blkbk_unmap`: unmap exactly the segments whose bit is set.
    /// Returns the request's id and operation, read in the same access to
    /// the slot.
    @discardableResult
    private func unmapRequest(_ connection: Connection, _ state: inout ConnectionState, slot: Int) throws(KernelPanic)
        -> (id: UInt64, operation: UInt8) {
        let vbd = connection.parameters.vbd
        var ops: [UnmapOp] = []
        let (unmapping, id, operation) = state.slots[slot].takeUnmapOps(into: &ops, vbd: vbd)
        // Published before the unmap, as the bitmap stood.
        publish(unmapping)
        if !ops.isEmpty { xen.grants.unmap(ops) }
        return (id, operation)
    }
}
