import Foundation

/// Places in this repository, found from this file's own path, so tests run
/// the same from any working directory.
public enum Repository {
    /// The package root: Tests/TestSupport/ is two levels below it.
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    public static let traces = root.appendingPathComponent("traces")
    public static let corpus = root.appendingPathComponent("corpus")

    /// Trace files below `directory` with one of `extensions`, in path order.
    public static func traceFiles(under directory: URL = traces, extensions: Set<String> = ["trace"]) -> [URL] {
        guard let walker = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil) else { return [] }
        return walker.compactMap { $0 as? URL }.filter { extensions.contains($0.pathExtension) }
            .sorted { $0.path < $1.path }
    }
}
