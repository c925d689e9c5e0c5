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
    /// The `key=value` entries in the order they appear, each with the index
    /// of its key in `schema`. A line has a handful of keys (a request at most
    /// 11 `seg=` and 8 others), so a scan beats hashing key strings.
    private var entries: [(param: Int, entry: Entry)] = []
    /// The flags present, bit i for `schema[i]` (a schema has fewer than 64 params).
    private var flags: UInt64 = 0

    /// `event` names the event in messages ("fail map"); each `repeatable` key forms a list.
    init(_ tokens: some Sequence<Token>, event: String, schema: [Param], repeatable: [String] = [],
         context: LineContext) throws(TraceError) {
        self.event = event
        self.context = context
        self.schema = schema
        entries.reserveCapacity(schema.count)
        for token in tokens {
            let piece = Piece(token)
            guard let (keyPiece, value) = piece.split(at: "=") else {
                try addFlag(token)
                continue
            }
            // Keys are short: as a String each is a small string, and small
            // strings compare by their bits, where a Substring would not.
            let key = String(keyPiece.text)
            guard let index = schema.firstIndex(where: { $0.name == key }) else {
                throw context.error(at: token.column, "unknown key \(quoted(key)) for '\(event)'; \(accepted)")
            }
            guard let hint = schema[index].hint else {
                throw context.error(at: token.column, "'\(key)' is a flag of '\(event)' and takes no value; expected '\(key)' alone")
            }
            guard repeatable.contains(schema[index].name) || !entries.contains(where: { $0.param == index }) else {
                throw context.error(at: token.column, "repeated key '\(key)' for '\(event)'; each key may appear once")
            }
            guard !value.text.isEmpty else {
                throw context.error(at: value.column, "missing value for '\(key)'; expected \(key)=\(hint)")
            }
            entries.append((index, Entry(column: token.column, value: value)))
        }
    }

    /// "expected one of …" the keys and flags of this event, for messages.
    private var accepted: String { expectedOne(of: schema.map(\.name)) }

    private mutating func addFlag(_ token: Token) throws(TraceError) {
        let word = String(token.text)
        guard let index = schema.firstIndex(where: { $0.name == word }) else {
            throw context.error(at: token.column, "unexpected word \(quoted(token.text)) for '\(event)'; \(accepted)")
        }
        let param = schema[index]
        if let hint = param.hint {
            throw context.error(at: token.column, "key '\(param.name)' needs a value; expected \(param.name)=\(hint)")
        }
        guard flags & 1 << index == 0 else {
            throw context.error(at: token.column, "repeated flag '\(param.name)' for '\(event)'; each flag may appear once")
        }
        flags |= 1 << index
    }

    private func index(of name: String) -> Int? { schema.firstIndex(where: { $0.name == name }) }

    func flag(_ name: String) -> Bool { index(of: name).map { flags & 1 << $0 != 0 } ?? false }

    func entries(_ key: String) -> [Entry] {
        guard let param = index(of: key) else { return [] }
        return entries.compactMap { $0.param == param ? $0.entry : nil }
    }

    /// The first `key=` entry, if present.
    private func first(_ key: String) -> Entry? {
        guard let param = index(of: key) else { return nil }
        return entries.first(where: { $0.param == param })?.entry
    }

    /// Column of the (first) `key=` token, if present.
    func column(of key: String) -> Int? { first(key)?.column }

    func optional<Value>(_ key: String, _ field: Field<Value>) throws(TraceError) -> Value? {
        guard let entry = first(key) else { return nil }
        return try context.read(entry.value, as: key, field)
    }

    func required<Value>(_ key: String, _ field: Field<Value>) throws(TraceError) -> Value {
        guard let value = try optional(key, field) else { throw missing(key) }
        return value
    }

    func all<Value>(_ key: String, _ field: Field<Value>) throws(TraceError) -> [Value] {
        guard let param = index(of: key) else { return [] }
        var values: [Value] = []
        for (index, entry) in entries where index == param { values.append(try context.read(entry.value, as: key, field)) }
        return values
    }

    func missing(_ key: String) -> TraceError {
        let hint = schema.first(where: { $0.name == key })?.hint ?? "…"
        return context.error(at: context.keywordColumn,
                             "missing required key '\(key)' for '\(event)'; expected \(key)=\(hint)")
    }
}
