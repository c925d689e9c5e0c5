/// The line an event is being read from, to turn problems into `TraceError`s.
struct LineContext {
    let file: String
    let line: Int
    /// Where the event's keyword starts: the place to blame for what is missing.
    let keywordColumn: Int
    /// The latest connect's domain before this line: the default `domid=`.
    var latestDomid: UInt16? = nil

    func error(at column: Int, _ message: String) -> TraceError {
        TraceError(file: file, position: .line(line, column: column), message: message)
    }

    /// Reads a value, placing a value error on this line.
    func read<Value>(_ piece: Piece, as key: String, _ field: Field<Value>) throws(TraceError) -> Value {
        do throws(FieldError) {
            return try field.read(piece, key)
        } catch {
            throw self.error(at: error.column, error.message)
        }
    }
}

/// One argument an event accepts: `key=value`, or a bare flag word.
struct Param: Sendable {
    let name: String
    /// What the value looks like, for messages ("1..32767"); nil for a flag.
    let hint: String?

    static func key(_ name: String, _ hint: String) -> Param { Param(name: name, hint: hint) }
    static func flag(_ name: String) -> Param { Param(name: name, hint: nil) }
}

/// The `key=value` and flag arguments of one event, checked against what the
/// event accepts: unknown, repeated and value-less keys are refused here, in
/// the order they appear, so each event parser only reads values.
struct Arguments {
    struct Entry {
        /// Column of the whole `key=value` token.
        let column: Int
        let value: Piece
    }

    let event: String
    let context: LineContext
    private let schema: [Param]
    private var entries: [String: [Entry]] = [:]
    private var flags: Set<String> = []

    /// `event` names the event in messages ("fail map"); `repeatable` keys form a list.
    init(_ tokens: some Sequence<Token>, event: String, schema: [Param], repeatable: Set<String> = [],
         context: LineContext) throws(TraceError) {
        self.event = event
        self.context = context
        self.schema = schema
        let accepted = expectedOne(of: schema.map(\.name))
        for token in tokens {
            let piece = Piece(token)
            guard let (keyPiece, value) = piece.split(at: "=") else {
                try addFlag(token, accepted: accepted)
                continue
            }
            let key = String(keyPiece.text)
            guard let param = schema.first(where: { $0.name == key }) else {
                throw context.error(at: token.column, "unknown key \(quoted(key)) for '\(event)'; \(accepted)")
            }
            guard let hint = param.hint else {
                throw context.error(at: token.column, "'\(key)' is a flag of '\(event)' and takes no value; expected '\(key)' alone")
            }
            guard entries[key] == nil || repeatable.contains(key) else {
                throw context.error(at: token.column, "repeated key '\(key)' for '\(event)'; each key may appear once")
            }
            guard !value.text.isEmpty else {
                throw context.error(at: value.column, "missing value for '\(key)'; expected \(key)=\(hint)")
            }
            entries[key, default: []].append(Entry(column: token.column, value: value))
        }
    }

    private mutating func addFlag(_ token: Token, accepted: String) throws(TraceError) {
        guard let param = schema.first(where: { $0.name == token.text }) else {
            throw context.error(at: token.column, "unexpected word \(quoted(token.text)) for '\(event)'; \(accepted)")
        }
        if let hint = param.hint {
            throw context.error(at: token.column, "key '\(param.name)' needs a value; expected \(param.name)=\(hint)")
        }
        guard flags.insert(param.name).inserted else {
            throw context.error(at: token.column, "repeated flag '\(param.name)' for '\(event)'; each flag may appear once")
        }
    }

    func flag(_ name: String) -> Bool { flags.contains(name) }

    func entries(_ key: String) -> [Entry] { entries[key] ?? [] }

    /// Column of the (first) `key=` token, if present.
    func column(of key: String) -> Int? { entries[key]?.first?.column }

    func optional<Value>(_ key: String, _ field: Field<Value>) throws(TraceError) -> Value? {
        guard let entry = entries[key]?.first else { return nil }
        return try context.read(entry.value, as: key, field)
    }

    func required<Value>(_ key: String, _ field: Field<Value>) throws(TraceError) -> Value {
        guard let value = try optional(key, field) else { throw missing(key) }
        return value
    }

    func all<Value>(_ key: String, _ field: Field<Value>) throws(TraceError) -> [Value] {
        var values: [Value] = []
        for entry in entries(key) { values.append(try context.read(entry.value, as: key, field)) }
        return values
    }

    func missing(_ key: String) -> TraceError {
        let hint = schema.first(where: { $0.name == key })?.hint ?? "…"
        return context.error(at: context.keywordColumn,
                             "missing required key '\(key)' for '\(event)'; expected \(key)=\(hint)")
    }
}
