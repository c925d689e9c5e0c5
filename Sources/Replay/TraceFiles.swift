import Foundation
import Harness
import Trace

/// Finds the traces under the paths a user gave, in a stable order.
enum TraceFiles {
    /// In the order messages list them.
    static let extensions = ["trace", "pcap", "pcapng"]

    private static var extensionList: String { extensions.map { "." + $0 }.joined(separator: ", ") }

    /// Directories are searched recursively for trace files; files named
    /// directly are taken whatever their extension. A missing path, or
    /// finding nothing at all, is an error: a gate that checks nothing must
    /// not pass.
    static func collect(_ paths: [String]) throws(ReplayFailure) -> [String] {
        var found: [String] = []
        let manager = FileManager.default
        for path in paths {
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw .invalid("\(path): no such file or directory; expected a trace file or a directory of them")
            }
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
        guard !found.isEmpty else {
            throw .invalid("no trace files (\(extensionList)) under \(paths.joined(separator: " "))")
        }
        return found
    }

    /// Every event of a trace file, for the commands that need the whole
    /// trace at once (decode --encode, minimize).
    static func readEvents(_ path: String) throws(ReplayFailure) -> [TraceEventKind] {
        do {
            return try TraceFile.readAll(path: path).map(\.kind)
        } catch {
            throw .invalid(error.description)
        }
    }
}
