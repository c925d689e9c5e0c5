import Glibc
import CZlib

/// The lines of a trace file, plain or gzip-compressed, read in fixed-size
/// chunks so memory does not grow with the file. zlib's gzread tells the two
/// apart by the gzip magic bytes (1f 8b) and passes other bytes through.
final class InputLines {
    let path: String
    /// The number of the line `next` returned last, from 1.
    private(set) var lineNumber = 0
    /// The longest line taken: a longer one is not a trace line (and would
    /// make memory grow with the input).
    static let maxLineBytes = 1 << 16
    private static let chunkBytes = 1 << 20

    private var file: gzFile?
    private var buffer: [UInt8]
    /// Unread bytes are buffer[start..<end].
    private var start = 0
    private var end = 0
    private var atEnd = false
    private(set) var isCompressed = false
    /// The size of the file on disk, for progress.
    let fileBytes: Int64

    init(path: String) throws(ImportError) {
        self.path = path
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw ImportError(file: path, line: 0, "cannot read: \(String(cString: strerror(errno)))")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw ImportError(file: path, line: 0, "not a regular file") }
        fileBytes = Int64(status.st_size)
        guard let file = gzopen(path, "rb") else {
            throw ImportError(file: path, line: 0, "cannot read: \(String(cString: strerror(errno)))")
        }
        gzbuffer(file, UInt32(Self.chunkBytes))
        self.file = file
        buffer = [UInt8](repeating: 0, count: Self.chunkBytes + Self.maxLineBytes)
        // gzdirect is only known once something was read: peek the first chunk now.
        try fill()
        isCompressed = gzdirect(file) == 0
    }

    deinit { if let file { gzclose_r(file) } }

    /// Bytes of the file on disk consumed so far (compressed bytes for a gzip file).
    var bytesConsumed: Int64 {
        guard let file else { return fileBytes }
        return isCompressed ? Int64(gzoffset(file)) : Int64(gztell(file))
    }

    /// Calls `body` with the next line (no line break, no trailing CR), or
    /// returns false at the end of the file. The bytes are valid only inside `body`.
    func next<Result>(_ body: (UnsafeBufferPointer<UInt8>) throws(LineProblem) -> Result)
        throws(ImportError) -> Result? {
        while true {
            let newline: Int? = buffer.withUnsafeBufferPointer { bytes in
                var index = start
                while index < end {
                    if bytes[index] == 0x0A { return index }
                    index += 1
                }
                return nil
            }
            if let newline, newline - start <= Self.maxLineBytes {
                return try deliver(upTo: newline, consuming: newline + 1, body)
            }
            if end - start > Self.maxLineBytes {
                throw ImportError(file: path, line: lineNumber + 1, "a line longer than \(Self.maxLineBytes) bytes: not a trace line")
            }
            if atEnd {
                guard end > start else { return nil }
                return try deliver(upTo: end, consuming: end, body)
            }
            try fill()
        }
    }

    private func deliver<Result>(upTo lineEnd: Int, consuming next: Int,
                                 _ body: (UnsafeBufferPointer<UInt8>) throws(LineProblem) -> Result) throws(ImportError) -> Result {
        lineNumber += 1
        var stop = lineEnd
        let result: Result
        do {
            result = try buffer.withUnsafeBufferPointer { (bytes) throws(LineProblem) -> Result in
                if stop > start && bytes[stop - 1] == 0x0D { stop -= 1 }
                return try body(UnsafeBufferPointer(rebasing: bytes[start..<stop]))
            }
        } catch {
            throw ImportError(file: path, line: lineNumber, error.message)
        }
        start = next
        return result
    }

    /// Moves the unread bytes to the front and reads more behind them.
    private func fill() throws(ImportError) {
        guard let file, !atEnd else { return }
        if start > 0 {
            let unread = end - start
            buffer.withUnsafeMutableBufferPointer { bytes in
                guard unread > 0 else { return }
                bytes.baseAddress!.update(from: bytes.baseAddress! + start, count: unread)
            }
            start = 0
            end = unread
        }
        let room = buffer.count - end
        let read = buffer.withUnsafeMutableBufferPointer { bytes in
            gzread(file, bytes.baseAddress! + end, UInt32(room))
        }
        if read < 0 {
            let (_, message) = zlibError()
            throw ImportError(file: path, line: lineNumber + 1, "cannot read: \(message.isEmpty ? "read error" : message)")
        }
        if read == 0 {
            // A gzip stream cut short reads as an end without an error from
            // gzread; gzerror says so.
            let (code, message) = zlibError()
            if code != Z_OK && code != Z_STREAM_END {
                throw ImportError(file: path, line: lineNumber + 1, "cannot read: \(message)")
            }
            atEnd = true
        }
        end += Int(read)
    }

    /// zlib's error code and message, without the path zlib puts first (the
    /// error names the file and line already).
    private func zlibError() -> (code: Int32, message: String) {
        var code: Int32 = 0
        var message = gzerror(file, &code).map { String(cString: $0) } ?? ""
        if message.hasPrefix(path + ": ") { message.removeFirst(path.count + 2) }
        return (code, message)
    }
}
