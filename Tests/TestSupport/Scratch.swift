import Foundation

/// A fresh directory for one test's files, removed by `cleanUp` or when
/// the test lets go of it.
public final class Scratch: Sendable {
    public let url: URL

    deinit { cleanUp() }

    public init(_ name: String = "test") throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("xenblk-tests-\(getpid())-\(name)-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    public func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    public func write(_ name: String, text: String) throws -> String {
        try write(name, Array(text.utf8))
    }

    public func cleanUp() { try? FileManager.default.removeItem(at: url) }
}

/// A file's bytes.
public func bytes(of path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
