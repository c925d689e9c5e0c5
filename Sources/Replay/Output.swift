import Foundation

/// Where the commands' words go: results to standard output or the file
/// `--output` names, diagnostics to standard error.
enum Output {
    /// One diagnostic on standard error (unbuffered, so it is never lost to an exit).
    static func error(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// Text to the file at `path`, replacing it whole, or to standard output
    /// when there is no path (ending with one newline).
    static func write(_ text: String, to path: String?) throws(ReplayFailure) {
        guard let path else {
            print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
            return
        }
        do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw .cannotWrite(path, because: error.localizedDescription)
        }
    }

    /// Bytes to the file at `path`, replacing it whole, or to standard output.
    static func write(_ data: Data, to path: String?) throws(ReplayFailure) {
        guard let path else {
            FileHandle.standardOutput.write(data)
            return
        }
        do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw .cannotWrite(path, because: error.localizedDescription)
        }
    }
}

/// Columns padded to their widest cell; the last column is left ragged.
enum Table {
    static func render(_ rows: [[String]]) -> String {
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
