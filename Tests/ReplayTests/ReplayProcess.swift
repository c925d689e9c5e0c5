import Foundation
import Testing

/// How one run of the built `replay` ended.
struct Outcome: CustomStringConvertible {
    let status: Int32
    let standardOutput: String
    let standardError: String

    /// The last non-empty line of standard output (the gate's count).
    var lastLine: String {
        standardOutput.split(separator: "\n").last.map(String.init) ?? ""
    }

    /// Shown when an expectation fails, so the failure says what replay said.
    var description: String {
        "exit \(status)\n--- stdout\n\(standardOutput)--- stderr\n\(standardError)"
    }
}

/// The package's root, from this file's place in Tests/ReplayTests.
let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The `replay` SwiftPM built for this test run: the test target depends on
/// the executable, so it sits next to the test binary (.build/debug/replay).
enum ReplayExecutable {
    static let path: String? = {
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = [
            testBinary.deletingLastPathComponent().appendingPathComponent("replay"),
            packageRoot.appendingPathComponent(".build/debug/replay"),
        ]
        return candidates.map(\.path).first { FileManager.default.isExecutableFile(atPath: $0) }
    }()
}

/// Runs `replay` with the arguments in `directory` (so that messages name
/// files as the test wrote them) and waits at most `timeout` seconds: a
/// hang is a failure, not a stuck test run.
func replay(_ arguments: [String], in directory: URL, timeout: TimeInterval = 300) throws -> Outcome {
    let executable = try #require(ReplayExecutable.path, "no built replay next to \(CommandLine.arguments[0])")
    // Output goes through files, not pipes, so a chatty run cannot fill a
    // pipe buffer and block while this side waits for it to exit.
    let capture = FileManager.default.temporaryDirectory
        .appendingPathComponent("replay-tests-capture-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: capture, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: capture) }
    let stdoutURL = capture.appendingPathComponent("stdout")
    let stderrURL = capture.appendingPathComponent("stderr")
    try Data().write(to: stdoutURL)
    try Data().write(to: stderrURL)
    let stdout = try FileHandle(forWritingTo: stdoutURL)
    let stderr = try FileHandle(forWritingTo: stderrURL)

    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.currentDirectoryURL = directory
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning {
        process.terminate()
        process.waitUntilExit()
        Issue.record("replay \(arguments.joined(separator: " ")) still running after \(timeout) s")
    }
    try stdout.close()
    try stderr.close()
    return Outcome(status: process.terminationStatus,
                   standardOutput: try String(contentsOf: stdoutURL, encoding: .utf8),
                   standardError: try String(contentsOf: stderrURL, encoding: .utf8))
}

/// A fresh directory for one test's traces, removed when the test lets go of it.
final class Scratch {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("replay-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

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
