import Blkif

/// The arguments each event accepts, in canonical order (the printer's order).
enum Schema {
    static let connect: [Param] = [
        .key("domid", "1..32767"), .key("protocol", "native|x86_32|x86_64"), .key("persistent", "0|1"),
        .key("backend-persistent", "0|1"), .key("max-persistent", "N"), .key("sectors", "N"),
        .key("flush", "0|1"), .key("discard", "0|1"), .key("vbd", "N"), .key("hotplug", "before|after"),
    ]
    static let grant: [Param] = [.key("gref", "N or A..B"), .flag("ro"), .key("domid", "1..32767")]
    static let revoke: [Param] = [.key("gref", "N or A..B"), .key("domid", "1..32767")]
    static let failMap: [Param] = [
        .key("gref", "N"), .key("times", "K"), .key("nth", "K"), .key("status", "S (a GNTST name such as general_error, or its number)"),
    ]
    static let failNth: [Param] = [.key("nth", "K")]
    static let request: [Param] = [
        .key("id", "N"), .key("op", "read|write|barrier|flush|discard|N"), .key("sector", "N"),
        .key("seg", "GREF:FIRST-LAST"), .key("nr", "N"), .key("nr-sectors", "N"), .key("handle", "N"),
        .key("vbd", "N"), .flag("hold"),
    ]
    static let raw: [Param] = [.key("hex", "HEX"), .key("vbd", "N"), .flag("hold")]
    static let complete: [Param] = [.key("id", "N"), .key("vbd", "N")]
    static let disconnect: [Param] = [.key("vbd", "N")]
    // `vbd=` on `expect response` and `expect persistent` is an extension of
    // docs/trace-format.md version 1 (default 0): the pcap encoding carries a vbd
    // in every packet header, and a response expected on another vbd must
    // survive conversion to text and back.
    static let expectResponse: [Param] = [.key("id", "N"), .key("status", "okay|error|eopnotsupp"), .key("vbd", "N")]
    static let expectPersistent: [Param] = [.key("persistent", "N"), .key("vbd", "N")]
    static let expectViolation: [Param] = [.key("backend", "NAME")]

    // Format version 2.
    static let indirect: [Param] = [
        .key("id", "N"), .key("op", "read|write|barrier|flush|discard|N"), .key("sector", "N"),
        .key("seg", "GREF:FIRST-LAST"), .key("nr", "N"), .key("page", "GREF"), .key("handle", "N"),
        .key("vbd", "N"), .flag("hold"),
    ]
    static let write: [Param] = [
        .key("gref", "N"), .key("offset", "0..4095"), .key("hex", "HEX"), .key("domid", "1..32767"),
        .key("after-reads", "K"),
    ]
    static let tick: [Param] = [.key("ms", "N"), .key("s", "N")]
    static let parameter: [Param] = ModuleParameter.allCases.map { .key($0.rawValue, "N") }

    static let keywords = ["frontend-key", "frontend-key-hex", "connect", "grant", "revoke", "fail", "request",
                           "raw", "complete", "expect", "disconnect", "indirect", "write", "tick", "param", "generations"]
    /// The keywords of each version after the first.
    static let keywordsSince2: Set<String> = ["indirect", "write", "tick", "param", "generations"]
    static let faults = ["map", "alloc", "hypercall"]
    static let expectations = ["response", "persistent=N", "violation"]
}

/// Reads one event from the tokens of a non-empty line. The one thing the
/// format makes depend on what came before — `domid=` defaults to the latest
/// connect's — comes from the trace's state, which the caller keeps.
struct EventParser: Sendable {
    let file: String

    init(file: String) {
        self.file = file
    }

    func parse(_ tokens: [Token], line: Int, after state: TraceState) throws(TraceError) -> TraceEvent {
        let keyword = tokens[0]
        let context = LineContext(file: file, line: line, keywordColumn: keyword.column, latestDomid: state.latestDomid)
        if state.formatVersion < 2, Schema.keywordsSince2.contains(String(keyword.text)) {
            throw context.error(at: keyword.column,
                                "'\(keyword.text)' is an event of trace format version 2, and this trace's header says version \(state.formatVersion); expected the header 'xenblk-trace 2' to use it")
        }
        let arguments = tokens.dropFirst()
        let kind: TraceEventKind
        // A String compares with the literals by its bits (small-string fast path).
        switch String(keyword.text) {
        case "frontend-key": kind = try frontendKey(arguments, context)
        case "frontend-key-hex": kind = try frontendKeyHex(arguments, context)
        case "connect": kind = try connect(arguments, context)
        case "grant": kind = try grant(arguments, context)
        case "revoke": kind = try revoke(arguments, context)
        case "fail": kind = try fail(arguments, context)
        case "request": kind = try request(arguments, context)
        case "raw": kind = try raw(arguments, context)
        case "complete": kind = try complete(arguments, context)
        case "expect": kind = try expect(arguments, context)
        case "disconnect": kind = try disconnect(arguments, context)
        case "indirect": kind = try indirect(arguments, context)
        case "write": kind = try write(arguments, context)
        case "tick": kind = try tick(arguments, context)
        case "param": kind = try parameter(arguments, context)
        case "generations": kind = try generations(arguments, context)
        default:
            throw context.error(at: keyword.column,
                                "unknown keyword \(quoted(keyword.text)); \(expectedOne(of: Schema.keywords))")
        }
        // A version-1 keyword with a key of a later version (`connect hotplug=after`).
        if kind.formatVersion > state.formatVersion {
            throw context.error(at: keyword.column,
                                "this '\(keyword.text)' needs trace format version \(kind.formatVersion) (hotplug=after), and this trace's header says version \(state.formatVersion); expected the header 'xenblk-trace \(kind.formatVersion)' to use it")
        }
        return TraceEvent(kind: kind, position: .line(line, column: keyword.column))
    }

    private func frontendKey(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let words = Array(tokens)
        guard words.count >= 2 else {
            let missing = words.isEmpty ? "NAME and VALUE" : "VALUE"
            throw context.error(at: context.keywordColumn,
                                "missing \(missing) for 'frontend-key'; expected frontend-key NAME VALUE")
        }
        guard words.count == 2 else {
            throw context.error(at: words[2].column,
                                "unexpected \(quoted(words[2].text)) after the value of 'frontend-key'; expected frontend-key NAME VALUE, the value one word without spaces")
        }
        let name = try context.read(Piece(words[0]), as: "NAME", .xenstoreKey)
        return .frontendKey(name: name, value: String(words[1].text))
    }

    /// `frontend-key-hex NAME [HEX]`: a value no word can spell (empty, or
    /// with spaces, tabs, line breaks or `#`), as the hex of its UTF-8 bytes;
    /// no HEX is the empty value.
    private func frontendKeyHex(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let words = Array(tokens)
        guard !words.isEmpty else {
            throw context.error(at: context.keywordColumn,
                                "missing NAME for 'frontend-key-hex'; expected frontend-key-hex NAME [HEX]")
        }
        guard words.count <= 2 else {
            throw context.error(at: words[2].column,
                                "unexpected \(quoted(words[2].text)) after the value of 'frontend-key-hex'; expected frontend-key-hex NAME [HEX]")
        }
        let name = try context.read(Piece(words[0]), as: "NAME", .xenstoreKey)
        guard words.count == 2 else { return .frontendKey(name: name, value: "") }
        let bytes = try context.read(Piece(words[1]), as: "HEX", .hex)
        guard let value = String(validating: bytes, as: UTF8.self) else {
            throw context.error(at: words[1].column,
                                "the value's bytes are not UTF-8; expected the hex of a UTF-8 xenstore value")
        }
        return .frontendKey(name: name, value: value)
    }

    private func connect(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let args = try Arguments(tokens, event: "connect", schema: Schema.connect, context: context)
        var event = ConnectEvent(domid: try args.required("domid", .integer(min: 1, max: 32767)))
        event.protocolName = try args.optional("protocol", .protocolName) ?? .native
        event.persistent = try args.optional("persistent", .bool)
        event.backendPersistent = try args.optional("backend-persistent", .bool) ?? true
        event.maxPersistent = try args.optional("max-persistent", .integer())
        event.sectors = try args.optional("sectors", .integer()) ?? event.sectors
        event.flush = try args.optional("flush", .bool) ?? true
        event.discard = try args.optional("discard", .bool) ?? false
        event.vbd = try args.optional("vbd", .integer()) ?? 0
        event.hotplugAfterConnect = try args.optional("hotplug", .hotplugOrder) ?? false
        return .connect(event)
    }

    /// An explicit `domid=`, else the latest connect's; never a guess.
    private func domid(_ args: Arguments) throws(TraceError) -> UInt16 {
        if let domid: UInt16 = try args.optional("domid", .integer(min: 1, max: 32767)) { return domid }
        guard let latestDomid = args.context.latestDomid else {
            throw args.context.error(at: args.context.keywordColumn,
                                     "'\(args.event)' before any connect needs its domain; expected domid=1..32767")
        }
        return latestDomid
    }

    private func grant(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let args = try Arguments(tokens, event: "grant", schema: Schema.grant, context: context)
        let grefs = try args.required("gref", .grefs)
        return .grant(GrantEvent(grefs: grefs, readOnly: args.flag("ro"), domid: try domid(args)))
    }

    private func revoke(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let args = try Arguments(tokens, event: "revoke", schema: Schema.revoke, context: context)
        let grefs = try args.required("gref", .grefs)
        return .revoke(RevokeEvent(grefs: grefs, domid: try domid(args)))
    }

    private func fail(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        guard let fault = tokens.first else {
            throw context.error(at: context.keywordColumn,
                                "missing fault for 'fail'; \(expectedOne(of: Schema.faults))")
        }
        let rest = tokens.dropFirst()
        switch fault.text {
        case "map":
            return .fail(try failMap(rest, context))
        case "alloc", "hypercall":
            let args = try Arguments(rest, event: "fail \(fault.text)", schema: Schema.failNth, context: context)
            let nth: Int = try args.required("nth", .integer(min: 1))
            return .fail(fault.text == "alloc" ? .allocNth(nth: nth) : .hypercallNth(nth: nth))
        default:
            throw context.error(at: fault.column,
                                "unknown fault \(quoted(fault.text)) for 'fail'; \(expectedOne(of: Schema.faults))")
        }
    }

    /// `fail map` takes exactly one of `gref=` (with `times=`) and `nth=`.
    private func failMap(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> FaultEvent {
        let args = try Arguments(tokens, event: "fail map", schema: Schema.failMap, context: context)
        switch (args.column(of: "gref"), args.column(of: "nth")) {
        case (nil, nil):
            throw context.error(at: context.keywordColumn,
                                "missing required key 'gref' or 'nth' for 'fail map'; expected gref=N or nth=K")
        case let (grefColumn?, nthColumn?):
            throw context.error(at: max(grefColumn, nthColumn),
                                "'fail map' takes gref= or nth=, not both; expected one of them")
        case (_?, nil):
            let gref: UInt32 = try args.required("gref", .integer())
            let times: Int = try args.optional("times", .integer(min: 1)) ?? 1
            return .mapGref(gref: gref, times: times, status: try args.required("status", .faultStatus))
        case (nil, _?):
            if let timesColumn = args.column(of: "times") {
                throw context.error(at: timesColumn,
                                    "'times' counts the failures of one gref; expected it only with gref=, not nth=")
            }
            let nth: Int = try args.required("nth", .integer(min: 1))
            return .mapNth(nth: nth, status: try args.required("status", .faultStatus))
        }
    }

    private func request(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let args = try Arguments(tokens, event: "request", schema: Schema.request, repeatable: ["seg"], context: context)
        let id: UInt64 = try args.required("id", .integer())
        let operation = try args.required("op", .operation)
        let sector: UInt64 = try args.required("sector", .integer())
        let segmentEntries = args.entries("seg")
        if segmentEntries.count > Blkif.maxSegmentsPerRequest {
            throw context.error(at: segmentEntries[Blkif.maxSegmentsPerRequest].column,
                                "more than \(Blkif.maxSegmentsPerRequest) seg= for 'request'; a ring slot carries at most \(Blkif.maxSegmentsPerRequest) segments")
        }
        let isDiscard = operation == BlkifOperation.discard.rawValue
        // A discard's nr_sectors occupies the first segment slot, so the two
        // cannot both be carried; refusing keeps text and ring bytes equivalent.
        if isDiscard, let first = segmentEntries.first {
            throw context.error(at: first.column,
                                "a discard request carries no segments (nr_sectors takes their place); expected nr-sectors= instead of seg=")
        }
        if !isDiscard, let column = args.column(of: "nr-sectors") {
            throw context.error(at: column,
                                "'nr-sectors' is only carried by op=discard; this request has op=\(operationName(operation))")
        }
        return .request(RequestEvent(
            id: id, operation: operation, sector: sector,
            segments: try args.all("seg", .segment),
            nrSegments: try args.optional("nr", .integer()),
            nrSectors: try args.optional("nr-sectors", .integer()),
            handle: try args.optional("handle", .integer()) ?? 0,
            vbd: try args.optional("vbd", .integer()) ?? 0,
            hold: args.flag("hold")))
    }

    /// `indirect`: every descriptor must have a page to be written into,
    /// so `page=` must be given for each 512 of them (more pages may be named).
    private func indirect(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let args = try Arguments(tokens, event: "indirect", schema: Schema.indirect, repeatable: ["seg", "page"],
                                 context: context)
        let id: UInt64 = try args.required("id", .integer())
        let operation = try args.required("op", .operation)
        let sector: UInt64 = try args.required("sector", .integer())
        let segmentEntries = args.entries("seg")
        let maxSegments = IndirectRequestEvent.maxSegments
        if segmentEntries.count > maxSegments {
            throw context.error(at: segmentEntries[maxSegments].column,
                                "more than \(maxSegments) seg= for 'indirect'; eight indirect pages hold at most \(maxSegments) descriptors")
        }
        let pageEntries = args.entries("page")
        if pageEntries.count > Blkif.maxIndirectPagesPerRequest {
            throw context.error(at: pageEntries[Blkif.maxIndirectPagesPerRequest].column,
                                "more than \(Blkif.maxIndirectPagesPerRequest) page= for 'indirect'; a ring slot carries at most \(Blkif.maxIndirectPagesPerRequest) indirect grefs")
        }
        let pagesNeeded = Blkif.indirectPages(forSegments: segmentEntries.count)
        if pageEntries.count < pagesNeeded {
            let column = segmentEntries[pageEntries.count * Blkif.segmentsPerIndirectPage].column
            throw context.error(at: column,
                                "\(segmentEntries.count) descriptors fill \(pagesNeeded) indirect pages but 'indirect' names \(pageEntries.count); expected a page=GREF for each \(Blkif.segmentsPerIndirectPage) seg=")
        }
        return .indirect(IndirectRequestEvent(
            id: id, operation: operation, sector: sector,
            segments: try args.all("seg", .segment),
            nrSegments: try args.optional("nr", .integer()),
            pages: try args.all("page", .integer()),
            handle: try args.optional("handle", .integer()) ?? 0,
            vbd: try args.optional("vbd", .integer()) ?? 0,
            hold: args.flag("hold")))
    }

    private func write(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let args = try Arguments(tokens, event: "write", schema: Schema.write, context: context)
        let gref: UInt32 = try args.required("gref", .integer())
        let offset: Int = try args.required("offset", .integer(max: Blkif.pageSize - 1))
        let bytes = try args.required("hex", .hex)
        if offset + bytes.count > Blkif.pageSize, let column = args.column(of: "hex") {
            throw context.error(at: column,
                                "\(bytes.count) bytes at offset \(offset) end past the page; expected offset + bytes <= \(Blkif.pageSize)")
        }
        return .write(GuestWriteEvent(gref: gref, domid: try domid(args), offset: offset, bytes: bytes,
                                      afterReads: try args.optional("after-reads", .integer(min: 1))))
    }

    /// `tick ms=N` or `tick s=N`; canonical text prints whole seconds as `s=`.
    private func tick(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let args = try Arguments(tokens, event: "tick", schema: Schema.tick, context: context)
        switch (args.column(of: "ms"), args.column(of: "s")) {
        case (nil, nil):
            throw context.error(at: context.keywordColumn, "missing time for 'tick'; expected ms=N or s=N")
        case let (msColumn?, sColumn?):
            throw context.error(at: max(msColumn, sColumn), "'tick' takes ms= or s=, not both; expected one of them")
        case (_?, nil):
            return .tick(milliseconds: try args.required("ms", .integer(max: TraceEventKind.maxTickMilliseconds)))
        case (nil, _?):
            let seconds: UInt64 = try args.required("s", .integer(max: TraceEventKind.maxTickMilliseconds / 1000))
            return .tick(milliseconds: seconds * 1000)
        }
    }

    /// `param NAME=VALUE`, one parameter per line.
    private func parameter(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let args = try Arguments(tokens, event: "param", schema: Schema.parameter, context: context)
        let given = ModuleParameter.allCases.compactMap { parameter in args.column(of: parameter.rawValue).map { (parameter, $0) } }
        guard let (parameter, _) = given.first else {
            throw context.error(at: context.keywordColumn,
                                "missing parameter for 'param'; \(expectedOne(of: ModuleParameter.allCases.map { $0.rawValue + "=N" }))")
        }
        if given.count > 1 {
            throw context.error(at: given.map(\.1).max()!, "'param' sets one parameter per line; expected one NAME=VALUE")
        }
        let value: UInt64 = try args.required(parameter.rawValue, .integer(max: parameter.maximum))
        return .parameter(parameter, value: value)
    }

    /// `generations NAME…`: one or more generation names, each once.
    private func generations(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let known = TraceFormat.generationNames
        guard !tokens.isEmpty else {
            throw context.error(at: context.keywordColumn,
                                "missing generation for 'generations'; \(expectedOne(of: known))")
        }
        var names: [String] = []
        for token in tokens {
            let name = String(token.text)
            guard known.contains(name) else {
                throw context.error(at: token.column, "unknown generation \(quoted(token.text)); \(expectedOne(of: known))")
            }
            guard !names.contains(name) else {
                throw context.error(at: token.column, "generation '\(name)' named twice; expected each once")
            }
            names.append(name)
        }
        return .generations(known.filter(names.contains))
    }

    private func raw(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let args = try Arguments(tokens, event: "raw", schema: Schema.raw, context: context)
        return .raw(RawRequestEvent(bytes: try args.required("hex", .hex),
                                    vbd: try args.optional("vbd", .integer()) ?? 0,
                                    hold: args.flag("hold")))
    }

    private func complete(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let args = try Arguments(tokens, event: "complete", schema: Schema.complete, context: context)
        return .complete(id: try args.required("id", .integer()), vbd: try args.optional("vbd", .integer()) ?? 0)
    }

    private func disconnect(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        let args = try Arguments(tokens, event: "disconnect", schema: Schema.disconnect, context: context)
        return .disconnect(vbd: try args.optional("vbd", .integer()) ?? 0)
    }

    private func expect(_ tokens: ArraySlice<Token>, _ context: LineContext) throws(TraceError) -> TraceEventKind {
        guard let form = tokens.first else {
            throw context.error(at: context.keywordColumn,
                                "missing expectation for 'expect'; \(expectedOne(of: Schema.expectations))")
        }
        // `vbd=` (an extension, see Schema) on response and persistent; a
        // violation concerns the whole trace, so it stays on vbd 0.
        switch form.text {
        case "response":
            let args = try Arguments(tokens.dropFirst(), event: "expect response", schema: Schema.expectResponse,
                                     context: context)
            return .expect(.response(id: try args.required("id", .integer()),
                                     status: try args.required("status", .responseStatus)),
                           vbd: try args.optional("vbd", .integer()) ?? 0)
        case "violation":
            return .expect(try violation(tokens.dropFirst(), after: form, context), vbd: 0)
        case _ where form.text == "persistent" || form.text.hasPrefix("persistent="):
            // The form is itself the key: `expect persistent=N`.
            let args = try Arguments(tokens, event: "expect persistent", schema: Schema.expectPersistent,
                                     context: context)
            return .expect(.persistent(count: try args.required("persistent", .integer())),
                           vbd: try args.optional("vbd", .integer()) ?? 0)
        default:
            throw context.error(at: form.column,
                                "unknown expectation \(quoted(form.text)) for 'expect'; \(expectedOne(of: Schema.expectations))")
        }
    }

    private func violation(_ tokens: ArraySlice<Token>, after form: Token,
                           _ context: LineContext) throws(TraceError) -> Expectation {
        let checks = expectedOne(of: CheckID.allCases.map(\.rawValue))
        guard let checkToken = tokens.first else {
            throw context.error(at: form.column, "missing check after 'expect violation'; \(checks)")
        }
        guard !checkToken.text.contains("=") else {
            throw context.error(at: checkToken.column,
                                "missing check before \(quoted(checkToken.text)) in 'expect violation'; \(checks)")
        }
        let check = try context.read(Piece(checkToken), as: "check", .check)
        let args = try Arguments(tokens.dropFirst(), event: "expect violation", schema: Schema.expectViolation,
                                 context: context)
        return .violation(check, backend: try args.optional("backend", .backendName))
    }
}

/// `op=` as the canonical text writes it: the name, or the number when it has none.
func operationName(_ operation: UInt8) -> String {
    BlkifOperation(rawValue: operation)?.traceName ?? String(operation)
}
