import Blkif
import Trace

/// The reverse of `FuzzDecoder`: the fuzz input a trace stands for, so that
/// the conformance suite seeds the fuzz corpus. Each event is encoded as a
/// choice and checked by decoding it back in the same state; an event outside
/// the decoder's domain (an expectation, a value no choice can produce, an
/// event the trace runner would refuse) is skipped and reported, and the
/// encoding goes on without it.
public enum FuzzEncoder {
    public struct Encoding: Sendable {
        /// The fuzz input.
        public var bytes: [UInt8] = []
        /// What the input decodes to: the encoded events, in canonical form.
        public var events: [TraceEventKind] = []
        /// Events left out, by index in the trace, with the reason.
        public var skipped: [(index: Int, reason: String)] = []

        /// Whether every event made it (expectations aside when `ignoringExpectations`).
        public func isExact(ignoringExpectations: Bool = true) -> Bool {
            skipped.allSatisfy { ignoringExpectations && $0.reason == FuzzEncoder.expectationReason }
        }
    }

    static let expectationReason = "expectations are not fuzzed"

    public static func encode(_ events: [TraceEventKind]) -> Encoding {
        var encoding = Encoding()
        var state = FuzzState()
        for (index, original) in events.enumerated() {
            if case .expect = original {
                encoding.skipped.append((index, expectationReason))
                continue
            }
            if case .generations = original {
                encoding.skipped.append((index, expectationReason))
                continue
            }
            guard encoding.events.count < FuzzFormat.maxEvents else {
                encoding.skipped.append((index, "beyond the decoder's \(FuzzFormat.maxEvents) events"))
                continue
            }
            let event = original.canonical(after: state.trace)
            let candidates = choices(for: event, state: state)
            guard !candidates.isEmpty else {
                encoding.skipped.append((index, "no fuzz choice gives this event in this state"))
                continue
            }
            // The decoder is the judge: the choice must decode to the event.
            let decodesBack = { (bytes: [UInt8]) -> Bool in
                var reader = FuzzReader(bytes)
                return FuzzDecoder.decodeChoice(&reader, state: state) == event && reader.offset == bytes.count
            }
            guard let bytes = candidates.first(where: decodesBack) else {
                encoding.skipped.append((index, "outside the decoder's domain (a value or state no choice reaches)"))
                continue
            }
            guard encoding.bytes.count + bytes.count <= FuzzFormat.maxInput else {
                encoding.skipped.append((index, "beyond the decoder's \(FuzzFormat.maxInput) bytes"))
                continue
            }
            encoding.bytes += bytes
            encoding.events.append(event)
            state.apply(event)
        }
        return encoding
    }

    /// The form the decoder produces for an event that means the same:
    /// requests in canonical form (raw requests are left as they are here;
    /// see `TraceEventKind.canonical(after:)`, which knows the vbd's protocol).
    public static func canonical(_ kind: TraceEventKind) -> TraceEventKind {
        switch kind {
        case .request(let request): .request(request.canonical)
        case .indirect(let request): .indirect(request.canonical)
        default: kind
        }
    }

    // MARK: choices

    /// Choices that may stand for the event, in order of preference.
    static func choices(for event: TraceEventKind, state: FuzzState) -> [[UInt8]] {
        var candidates: [[UInt8]] = []
        if let first = choice(for: event, state: state) { candidates.append(first) }
        // A request whose values no request choice reaches, as its ring bytes.
        if case .request(let request) = event, let ringProtocol = state.trace.connected[request.vbd]?.ringProtocol,
           let raw = choice(for: .raw(RawRequestEvent(bytes: ringProtocol.encode(request.blkifRequest), vbd: request.vbd,
                                                      hold: request.hold)), state: state) {
            candidates.append(raw)
        }
        return candidates
    }

    static func choice(for event: TraceEventKind, state: FuzzState) -> [UInt8]? {
        switch event {
        case .frontendKey(let name, let value):
            guard let n = FuzzFormat.Pool.keyNames.firstIndex(of: name),
                  let v = FuzzFormat.Pool.keyValues.firstIndex(of: value) else { return nil }
            return [FuzzFormat.Opcode.frontendKey.lowerBound, UInt8(n) | UInt8(v) << 1]
        case .connect(let connect):
            if let live = state.trace.connected[connect.vbd] { return connectAgain(connect, live: live, state: state) }
            return self.connect(connect)
        case .grant(let grant):
            return range(FuzzFormat.Opcode.grant.lowerBound, grant.grefs, readOnly: grant.readOnly,
                         domid: grant.domid, state: state)
        case .revoke(let revoke):
            return range(FuzzFormat.Opcode.revoke.lowerBound, revoke.grefs, readOnly: false,
                         domid: revoke.domid, state: state)
        case .fail(let fault):
            return fail(fault)
        case .request(let request):
            guard let index = state.connectedVbds.firstIndex(of: request.vbd), index < 4 else { return nil }
            guard let body = requestBody(request, vbdIndex: index) else { return nil }
            return [FuzzFormat.Opcode.request.lowerBound] + body
        case .raw(let raw):
            guard let index = state.connectedVbds.firstIndex(of: raw.vbd), index < 4,
                  raw.bytes.count <= FuzzFormat.rawExplicitSize else { return nil }
            let flags = UInt8(raw.hold ? 0x04 : 0) | UInt8(index) << 3
            let padded = raw.bytes + [UInt8](repeating: 0, count: FuzzFormat.rawExplicitSize - raw.bytes.count)
            return [FuzzFormat.Opcode.raw.lowerBound, flags] + padded
        case let .complete(id, vbd):
            guard let index = state.holdingVbds.firstIndex(of: vbd), index < 256,
                  let heldIndex = state.trace.connected[vbd]?.held.firstIndex(of: id), heldIndex < 256 else { return nil }
            return [FuzzFormat.Opcode.complete.lowerBound, UInt8(index), UInt8(heldIndex)]
        case .disconnect(let vbd):
            guard let index = state.connectedVbds.firstIndex(of: vbd), index < 256 else { return nil }
            return [FuzzFormat.Opcode.disconnect.lowerBound, UInt8(index)]
        case .indirect(let request):
            guard let index = state.connectedVbds.firstIndex(of: request.vbd), index < 4 else { return nil }
            return indirect(request, vbdIndex: index)
        case .write(let write):
            guard write.domid == state.defaultDomid, (1...8).contains(write.bytes.count) else { return nil }
            var bytes = [FuzzFormat.Opcode.write.lowerBound] + pick(UInt64(write.gref), FuzzFormat.Pool.gref)
            bytes += pick(UInt64(write.offset), FuzzFormat.Pool.writeOffset)
            bytes.append(UInt8(write.bytes.count - 1))
            bytes += write.bytes
            if let index = FuzzFormat.Pool.afterReads.firstIndex(of: write.afterReads.map(UInt64.init)) {
                bytes.append(UInt8(index))
            } else if let reads = write.afterReads {
                bytes += explicit(UInt64(reads))
            }
            return bytes
        case .tick(let milliseconds):
            return [FuzzFormat.Opcode.tick.lowerBound] + pick(milliseconds, FuzzFormat.Pool.tick)
        case let .parameter(parameter, value):
            guard let index = FuzzFormat.Pool.parameters.firstIndex(where: { $0.parameter == parameter }) else { return nil }
            return [FuzzFormat.Opcode.parameter.lowerBound, UInt8(index)] + pick(value, FuzzFormat.Pool.parameters[index].pool)
        case .expect, .generations:
            return nil
        }
    }

    /// An indirect choice for the vbd at `vbdIndex`: its descriptors and the
    /// pages they fill (a request naming other pages is outside the domain).
    static func indirect(_ request: IndirectRequestEvent, vbdIndex: Int) -> [UInt8]? {
        // The choice names as many pages as the descriptors fill, at least
        // one; canonical form drops a trailing zero gref past those, so the
        // dropped ones are picked back as zeros.
        let pageCount = max(1, Blkif.indirectPages(forSegments: request.segments.count))
        guard request.pages.count <= pageCount else { return nil }
        let pages = request.pages + Array(repeating: 0, count: pageCount - request.pages.count)
        var bytes = [FuzzFormat.Opcode.indirect.lowerBound]
        bytes += requestHead(operation: request.operation, nrSegments: request.nrSegments, wideCount: true,
                             handle: request.handle, hold: request.hold, vbdIndex: vbdIndex)
        bytes += pick(request.id, FuzzFormat.Pool.id)
        bytes += pick(request.sector, FuzzFormat.Pool.sector)
        bytes += pick(UInt64(request.segments.count), FuzzFormat.Pool.descriptors)
        for segment in request.segments { bytes += self.segment(segment) }
        for page in pages { bytes += pick(UInt64(page), FuzzFormat.Pool.gref) }
        return bytes
    }

    /// The head request and indirect choices share (`FuzzDecoder.requestHead`):
    /// flags, then the operation, count and handle the flags announce.
    static func requestHead(operation: UInt8, nrSegments: UInt16?, wideCount: Bool, handle: UInt16, hold: Bool,
                            vbdIndex: Int) -> [UInt8] {
        var flags = UInt8(vbdIndex) << 5
        var after: [UInt8] = []
        if let index = FuzzFormat.Pool.operations.firstIndex(of: operation) {
            flags |= UInt8(index)
        } else {
            flags |= 7
            after.append(operation)
        }
        if hold { flags |= 0x08 }
        if let count = nrSegments {
            flags |= 0x10
            after.append(UInt8(truncatingIfNeeded: count))
            if wideCount { after.append(UInt8(truncatingIfNeeded: count >> 8)) }
        }
        if handle != 0 {
            flags |= 0x80
            after += [UInt8(truncatingIfNeeded: handle), UInt8(truncatingIfNeeded: handle >> 8)]
        }
        return [flags] + after
    }

    /// A segment's gref pick and sectors byte (or explicit sectors).
    static func segment(_ segment: BlkifSegment) -> [UInt8] {
        var bytes = pick(UInt64(segment.gref), FuzzFormat.Pool.gref)
        if segment.firstSect <= segment.lastSect && segment.lastSect <= 7 {
            bytes.append(segment.firstSect | (segment.lastSect - segment.firstSect) << 3)
        } else {
            bytes += [FuzzFormat.explicitSectors, segment.firstSect, segment.lastSect]
        }
        return bytes
    }

    /// A pick of `value`: its index in the pool, else the narrowest explicit form.
    static func pick(_ value: UInt64, _ pool: [UInt64]) -> [UInt8] {
        if let index = pool.firstIndex(of: value) { return [UInt8(index)] }
        return explicit(value)
    }

    static func explicit(_ value: UInt64) -> [UInt8] {
        for (k, width) in FuzzFormat.explicitWidths.enumerated() where width == 8 || value < (1 << (8 * UInt64(width))) {
            return [FuzzFormat.explicitPick + UInt8(k)] + (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        }
        return []
    }

    /// A connect of a live vbd, which only the connect-again choice makes:
    /// its domain and protocol, a persistent= from the pool, the rest default.
    static func connectAgain(_ connect: ConnectEvent, live: TraceState.ConnectedVbd, state: FuzzState) -> [UInt8]? {
        guard let index = state.connectedVbds.firstIndex(of: connect.vbd), index < 256,
              let persistentIndex = FuzzFormat.Pool.persistent.firstIndex(of: connect.persistent),
              connect == ConnectEvent(domid: live.domid, protocolName: live.ringProtocol,
                                      persistent: connect.persistent, vbd: connect.vbd) else { return nil }
        return [FuzzFormat.Opcode.connectAgain.lowerBound, UInt8(index), UInt8(persistentIndex) << 2]
    }

    static func connect(_ connect: ConnectEvent) -> [UInt8]? {
        guard let protocolIndex = FuzzFormat.Pool.protocols.firstIndex(of: connect.protocolName),
              let persistentIndex = FuzzFormat.Pool.persistent.firstIndex(of: connect.persistent) else { return nil }
        var flags = UInt8(protocolIndex) | UInt8(persistentIndex) << 2
        if !connect.backendPersistent { flags |= 0x10 }
        if !connect.flush { flags |= 0x20 }
        if connect.discard { flags |= 0x40 }
        let opcode = connect.hotplugAfterConnect ? FuzzFormat.Opcode.connectHotplugAfter : FuzzFormat.Opcode.connect
        var bytes = [opcode.lowerBound, flags]
        bytes += pick(UInt64(connect.vbd), FuzzFormat.Pool.vbd)
        bytes += pick(UInt64(connect.domid), FuzzFormat.Pool.domid)
        let limit = connect.maxPersistent.map { UInt64(clamping: $0) }
        if let index = FuzzFormat.Pool.maxPersistent.firstIndex(of: limit) {
            bytes.append(UInt8(index))
        } else if let limit {
            bytes += explicit(limit)
        } else {
            return nil
        }
        bytes += pick(connect.sectors, FuzzFormat.Pool.sectors)
        return bytes
    }

    static func range(_ opcode: UInt8, _ grefs: ClosedRange<UInt32>, readOnly: Bool, domid: UInt16,
                      state: FuzzState) -> [UInt8]? {
        var bytes = [opcode] + pick(UInt64(grefs.lowerBound), FuzzFormat.Pool.gref)
        var shape: UInt8 = readOnly ? 0x08 : 0
        var tail: [UInt8] = []
        if domid != state.defaultDomid {
            shape |= 0x10
            tail += pick(UInt64(domid), FuzzFormat.Pool.domid)
        }
        let length = grefs.count
        if let index = FuzzFormat.Pool.shapeLength.firstIndex(of: UInt32(clamping: length)) {
            shape |= UInt8(index)
        } else {
            shape |= 0x20
            tail += pick(UInt64(length), FuzzFormat.Pool.rangeLength)
        }
        bytes.append(shape)
        return bytes + tail
    }

    static func fail(_ fault: FaultEvent) -> [UInt8]? {
        let status = { (status: GrantStatus) -> UInt8? in
            status.rawValue < 0 ? UInt8(-1 - status.rawValue) : nil
        }
        let opcode = FuzzFormat.Opcode.fail.lowerBound
        switch fault {
        case let .mapGref(gref, times, code):
            guard let code = status(code) else { return nil }
            return [opcode, 0] + pick(UInt64(gref), FuzzFormat.Pool.gref)
                + pick(UInt64(clamping: times), FuzzFormat.Pool.times) + [code]
        case let .mapNth(nth, code):
            guard let code = status(code) else { return nil }
            return [opcode, 1] + pick(UInt64(clamping: nth), FuzzFormat.Pool.nth) + [code]
        case .allocNth(let nth):
            return [opcode, 2] + pick(UInt64(clamping: nth), FuzzFormat.Pool.nth)
        case .hypercallNth(let nth):
            return [opcode, 3] + pick(UInt64(clamping: nth), FuzzFormat.Pool.nth)
        }
    }

    /// The request body (flags onwards) of a request event, for the vbd at `vbdIndex`.
    static func requestBody(_ request: RequestEvent, vbdIndex: Int) -> [UInt8]? {
        guard request.segments.count <= Blkif.maxSegmentsPerRequest else { return nil }
        var bytes = requestHead(operation: request.operation, nrSegments: request.nrSegments.map(UInt16.init),
                                wideCount: false, handle: request.handle, hold: request.hold, vbdIndex: vbdIndex)
        bytes += pick(request.id, FuzzFormat.Pool.id)
        bytes += pick(request.sector, FuzzFormat.Pool.sector)
        if request.operation == BlkifOperation.discard.rawValue {
            guard request.segments.isEmpty else { return nil }
            bytes += pick(request.nrSectors ?? 0, FuzzFormat.Pool.discardLength)
        } else {
            guard request.nrSectors == nil else { return nil }
            bytes.append(UInt8(request.segments.count))
            for segment in request.segments { bytes += self.segment(segment) }
        }
        return bytes
    }
}
