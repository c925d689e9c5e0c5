import DequeModule

/// A map from numbers to values for numbers that are handed out densely:
/// guest pages, page frames, heap slots, bio ids, grant references, disk
/// chunks. A lookup is an index computation, not a hash.
///
/// Numbers are grouped in chunks (of 64 unless asked otherwise); a deque holds the chunks of a window
/// running from the lowest to the highest occupied chunk, with `nil` for
/// chunks that hold nothing. An emptied chunk gives its storage back at once
/// and the window shrinks from either end, so memory follows what is live,
/// not how many numbers were ever issued: a counter that only grows (frames,
/// addresses, bios are never reused) costs 8 bytes per chunk between the
/// oldest and the newest live one, and a whole chunk only where something lives.
///
/// A number far outside the window (a wild frame, a gref of 0xffffffff) goes
/// to a plain dictionary instead of stretching the window. No number is ever
/// in both: when the window grows over a stored outlier, the outlier moves in.
///
/// Each chunk's values live in memory the table allocates and frees itself
/// (the table cannot be copied, so nothing else ever sees that memory): a
/// change to a stored value is a write through the chunk's pointer, with no
/// copy-on-write uniqueness check of a chunk buffer or of the deque, which
/// is what each in-place change (a page's use count per segment) used to cost.
struct NumberedTable<Value>: ~Copyable {
    private struct Chunk {
        /// `chunkSize` values, initialised (nil where nothing is stored); owned by the table.
        let values: UnsafeMutablePointer<Value?>
        var occupied: Int
    }

    /// Numbers per chunk, as a power of two: 64 by default; a table whose
    /// live numbers are scattered (disk chunks under random I/O) takes
    /// smaller chunks so that one live number pins less empty room.
    private let chunkShift: UInt64
    private let chunkSize: Int
    private let slotMask: UInt64
    /// How far (in chunks) the window stretches to take a new number rather
    /// than filing it as an outlier: at most 8 KiB of nils at a time.
    private static var reach: UInt64 { 1024 }

    private var chunks: Deque<Chunk?> = []
    /// The chunk number of `chunks[0]`.
    private var firstChunk: UInt64 = 0
    private var outliers: [UInt64: Value] = [:]
    /// An emptied chunk's storage (all nil), kept for the next chunk to open:
    /// a counter that keeps emptying its newest chunk (a bio completing before
    /// the next is submitted) would otherwise allocate every time.
    private var spare: UnsafeMutablePointer<Value?>?
    private(set) var count = 0

    init(numbersPerChunkLog2 chunkShift: UInt64 = 6) {
        precondition((1...16).contains(chunkShift))
        self.chunkShift = chunkShift
        chunkSize = 1 << Int(chunkShift)
        slotMask = (1 << chunkShift) - 1
    }

    deinit {
        for case let chunk? in chunks { Self.release(chunk.values, count: chunkSize) }
        if let spare { Self.release(spare, count: chunkSize) }
    }

    var isEmpty: Bool { count == 0 }

    subscript(number: UInt64) -> Value? {
        get {
            let offset = (number >> chunkShift) &- firstChunk
            if offset < UInt64(chunks.count) {
                return chunks[Int(offset)]?.values[Int(number & slotMask)]
            }
            return outliers.isEmpty ? nil : outliers[number]
        }
        set {
            if let newValue {
                insert(newValue, at: number)
            } else {
                removeValue(at: number)
            }
        }
    }

    func contains(_ number: UInt64) -> Bool { self[number] != nil }

    /// Changes the value stored under `number` in place; nil (and no call) when there is none.
    ///
    /// Always inlined, so that `body` is too: called through a closure, the
    /// per-segment changes (a host page's use count) spent more on passing
    /// the value and the result back and forth than on the change itself.
    @inline(__always) @discardableResult
    mutating func modify<Result>(_ number: UInt64, _ body: (inout Value) -> Result) -> Result? {
        let offset = (number >> chunkShift) &- firstChunk
        if offset < UInt64(chunks.count) {
            guard let chunk = chunks[Int(offset)] else { return nil }
            let value = chunk.values + Int(number & slotMask)
            guard value.pointee != nil else { return nil }
            return body(&value.pointee!)
        }
        guard !outliers.isEmpty, outliers[number] != nil else { return nil }
        return body(&outliers[number]!)
    }

    /// Changes the value under `number` in place, storing `fresh` first when there is none.
    @inline(__always) @discardableResult
    mutating func modify<Result>(_ number: UInt64, default fresh: @autoclosure () -> Value,
                                 _ body: (inout Value) -> Result) -> Result {
        if let result = modify(number, body) { return result }
        var value = fresh()
        let result = body(&value)
        insert(value, at: number)
        return result
    }

    @discardableResult
    mutating func removeValue(at number: UInt64) -> Value? {
        let offset = (number >> chunkShift) &- firstChunk
        guard offset < UInt64(chunks.count) else {
            guard !outliers.isEmpty, let old = outliers.removeValue(forKey: number) else { return nil }
            count -= 1
            return old
        }
        let index = Int(offset)
        let slot = Int(number & slotMask)
        guard let values = chunks[index]?.values, let old = values[slot] else { return nil }
        count -= 1
        values[slot] = nil
        chunks[index]!.occupied -= 1
        if chunks[index]!.occupied == 0 {
            if let spare { Self.release(spare, count: chunkSize) }
            spare = values
            chunks[index] = nil
            trimEmptyEnds()
        }
        return old
    }

    /// Every number and value, numbers ascending.
    func forEachInOrder(_ body: (UInt64, Value) -> Void) {
        let windowStart = firstChunk << chunkShift
        let sortedOutliers = outliers.sorted { $0.key < $1.key }
        var outlierIndex = 0
        while outlierIndex < sortedOutliers.count, sortedOutliers[outlierIndex].key < windowStart {
            body(sortedOutliers[outlierIndex].key, sortedOutliers[outlierIndex].value)
            outlierIndex += 1
        }
        for (index, chunk) in chunks.enumerated() {
            guard let chunk else { continue }
            let chunkStart = (firstChunk + UInt64(index)) << chunkShift
            for slot in 0..<chunkSize {
                if let value = chunk.values[slot] { body(chunkStart + UInt64(slot), value) }
            }
        }
        while outlierIndex < sortedOutliers.count {
            body(sortedOutliers[outlierIndex].key, sortedOutliers[outlierIndex].value)
            outlierIndex += 1
        }
    }

    /// Every value, numbers ascending.
    var valuesInOrder: [Value] {
        var values: [Value] = []
        values.reserveCapacity(count)
        forEachInOrder { values.append($1) }
        return values
    }

    /// Chunks between the lowest and the highest occupied one (for tests of boundedness).
    var windowLength: Int { chunks.count }
    /// Chunks holding storage (for tests of boundedness).
    var allocatedChunkCount: Int { chunks.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }

    // MARK: growing and shrinking the window

    private mutating func insert(_ value: Value, at number: UInt64) {
        let chunkNumber = number >> chunkShift
        let slot = Int(number & slotMask)
        guard let index = windowIndex(coveringChunk: chunkNumber) else {
            if outliers.updateValue(value, forKey: number) == nil { count += 1 }
            return
        }
        if chunks[index] == nil {
            chunks[index] = Chunk(values: takeEmptyStorage(), occupied: 0)
        }
        let values = chunks[index]!.values
        if values[slot] == nil {
            chunks[index]!.occupied += 1
            count += 1
        }
        values[slot] = value
    }

    /// The window index of a chunk, stretching the window to it when it is
    /// near enough; nil when the chunk is too far and belongs to the outliers.
    private mutating func windowIndex(coveringChunk chunkNumber: UInt64) -> Int? {
        if chunks.isEmpty {
            firstChunk = chunkNumber
            chunks.append(nil)
            adoptOutliers(inChunks: chunkNumber...chunkNumber)
            return 0
        }
        let offset = chunkNumber &- firstChunk
        if offset < UInt64(chunks.count) { return Int(offset) }
        let end = firstChunk + UInt64(chunks.count)
        if chunkNumber >= end {
            guard chunkNumber - end < Self.reach else { return nil }
            chunks.append(contentsOf: repeatElement(nil, count: Int(chunkNumber - end) + 1))
            adoptOutliers(inChunks: end...chunkNumber)
            return chunks.count - 1
        }
        guard firstChunk - chunkNumber <= Self.reach else { return nil }
        chunks.prepend(contentsOf: repeatElement(nil, count: Int(firstChunk - chunkNumber)))
        let oldFirst = firstChunk
        firstChunk = chunkNumber
        adoptOutliers(inChunks: chunkNumber...(oldFirst - 1))
        return 0
    }

    /// Moves outliers that the window now covers into it.
    private mutating func adoptOutliers(inChunks covered: ClosedRange<UInt64>) {
        guard !outliers.isEmpty else { return }
        let adopted = outliers.filter { covered.contains($0.key >> chunkShift) }
        for (number, value) in adopted {
            outliers[number] = nil
            let index = Int((number >> chunkShift) - firstChunk)
            if chunks[index] == nil { chunks[index] = Chunk(values: takeEmptyStorage(), occupied: 0) }
            chunks[index]!.values[Int(number & slotMask)] = value
            chunks[index]!.occupied += 1
        }
    }

    private mutating func trimEmptyEnds() {
        while let first = chunks.first, first == nil {
            chunks.removeFirst()
            firstChunk += 1
        }
        while let last = chunks.last, last == nil { chunks.removeLast() }
    }

    private mutating func takeEmptyStorage() -> UnsafeMutablePointer<Value?> {
        if let storage = spare {
            spare = nil
            return storage
        }
        let storage = UnsafeMutablePointer<Value?>.allocate(capacity: chunkSize)
        storage.initialize(repeating: nil, count: chunkSize)
        return storage
    }

    private static func release(_ values: UnsafeMutablePointer<Value?>, count: Int) {
        values.deinitialize(count: count)
        values.deallocate()
    }
}
