import ArgumentParser
import Foundation
import Harness
import Trace

/// Finds the traces under the paths a user gave, in a stable order.
enum TraceFiles {
    static let extensions: Set<String> = ["trace", "pcap", "pcapng"]

    struct Missing: Error, CustomStringConvertible {
        let path: String
        var description: String { "no such file or directory: \(path)" }
    }

    /// Directories are searched recursively for trace files; files named
    /// directly are taken whatever their extension.
    static func collect(_ paths: [String]) throws -> [String] {
        var found: [String] = []
        let manager = FileManager.default
        for path in paths {
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else { throw Missing(path: path) }
            guard isDirectory.boolValue else {
                found.append(path)
                continue
            }
            let base = path.hasSuffix("/") ? String(path.dropLast()) : path
            guard let walker = manager.enumerator(atPath: path) else { continue }
            var here: [String] = []
            while let relative = walker.nextObject() as? String {
                let ext = (relative as NSString).pathExtension
                if extensions.contains(ext) { here.append(base + "/" + relative) }
            }
            found.append(contentsOf: here.sorted())
        }
        return found
    }
}

extension TraceFile {
    /// Every event of a trace file, for the commands that need the whole trace
    /// (decode --encode, minimize); a malformed file is reported and exits 2.
    static func readKindsOrExit(_ path: String) throws -> [TraceEventKind] {
        do {
            return try TraceFile.readAll(path: path).map(\.kind)
        } catch {
            FileOutput.standardError(error.description)
            throw ExitCode(2)
        }
    }
}
