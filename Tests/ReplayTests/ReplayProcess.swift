import Foundation
import TestSupport
import Testing

/// How one run of the built `replay` ended.
typealias Outcome = ProgramOutcome

/// The `replay` SwiftPM built for this test run: the test target depends on
/// the executable, so it sits next to the test binary (.build/debug/replay).
enum ReplayExecutable {
    static let path: String? = {
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = [
            testBinary.deletingLastPathComponent().appendingPathComponent("replay"),
            Repository.root.appendingPathComponent(".build/debug/replay"),
        ]
        return candidates.map(\.path).first { FileManager.default.isExecutableFile(atPath: $0) }
    }()
}

/// Runs `replay` with the arguments in `directory` (so that messages name
/// files as the test wrote them) and waits at most `timeout` seconds: a
/// hang is a failure, not a stuck test run.
func replay(_ arguments: [String], in directory: URL, timeout: TimeInterval = 300) throws -> Outcome {
    let executable = try #require(ReplayExecutable.path, "no built replay next to \(CommandLine.arguments[0])")
    let outcome = try runProgram(executable, arguments, in: directory, timeout: timeout)
    if outcome.timedOut { Issue.record("replay \(arguments.joined(separator: " ")) still running after \(timeout) s") }
    return outcome
}

/// A scratch directory that `replay` runs in, so that messages name files
/// as the test wrote them (relative to it).
struct WorkDirectory {
    private let scratch: Scratch
    var url: URL { scratch.url }

    init() throws { scratch = try Scratch("replay") }

    /// Writes a file and gives back its name, relative to the directory.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = url.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: file, atomically: true, encoding: .utf8)
        return name
    }

    func exists(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: url.appendingPathComponent(name).path)
    }

    func contents(_ name: String) throws -> String {
        try String(contentsOf: url.appendingPathComponent(name), encoding: .utf8)
    }

    /// `replay` run in this directory.
    func replay(_ arguments: String...) throws -> Outcome {
        try replay(arguments)
    }

    func replay(_ arguments: [String]) throws -> Outcome {
        try ReplayTests.replay(arguments, in: url)
    }
}

/// Small traces with a known verdict under the fixed backend.
enum SampleTrace {
    /// One read, mapped persistently once: passes.
    static let passing = """
        xenblk-trace 1
        connect domid=7 persistent=1
        grant gref=10..11
        request id=1 op=read sector=0 seg=10:0-7
        expect response id=1 status=okay
        expect persistent=1
        disconnect

        """

    /// The same read, expecting a persistent count it will not see: fails at line 6.
    static let failing = passing.replacingOccurrences(of: "expect persistent=1", with: "expect persistent=5")

    /// An unknown keyword at line 3.
    static let malformed = """
        xenblk-trace 1
        connect domid=7 persistent=1
        frobnicate now

        """

    /// More events than a fuzz input holds, so encoding it leaves some out.
    static let longerThanAFuzzInput = "xenblk-trace 1\nconnect domid=7 persistent=1\n"
        + (1...300).map { "grant gref=\($0)\n" }.joined()
}
