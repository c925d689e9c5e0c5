#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading a trace file: plain C stdio, so the Trace library needs no Foundation.
enum FileBytes {
    struct Problem: Error {
        let reason: String
    }

    static func read(path: String) -> Result<[UInt8], Problem> {
        guard let handle = fopen(path, "rb") else { return .failure(Problem(reason: systemReason())) }
        defer { fclose(handle) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, handle) }
            bytes.append(contentsOf: chunk[..<count])
            if count < chunk.count { break }
        }
        // A directory opens fine on Linux; the read is what fails.
        if ferror(handle) != 0 { return .failure(Problem(reason: systemReason())) }
        return .success(bytes)
    }

    private static func systemReason() -> String {
        guard let text = strerror(errno) else { return "error \(errno)" }
        return String(cString: text)
    }

    /// Line and column (1-based, in scalars, as the lexer counts) of the first byte that is not UTF-8.
    static func firstInvalidUTF8(in bytes: [UInt8]) -> (line: Int, column: Int)? {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var line = 1
        var column = 1
        while true {
            switch decoder.decode(&iterator) {
            case let .scalarValue(scalar):
                if scalar == "\n" {
                    line += 1
                    column = 1
                } else {
                    column += 1
                }
            case .emptyInput:
                return nil
            case .error:
                return (line, column)
            }
        }
    }
}
