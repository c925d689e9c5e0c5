import Foundation

/// The path of an executable on PATH, if any.
public func executable(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// How one run of a program ended.
public struct ProgramOutcome: CustomStringConvertible, Sendable {
    public let status: Int32
    public let standardOutput: String
    public let standardError: String
    /// Whether it was still running at its deadline (and was stopped).
    public let timedOut: Bool

    /// The last non-empty line of standard output.
    public var lastLine: String {
        standardOutput.split(separator: "\n").last.map(String.init) ?? ""
    }

    /// Shown when an expectation fails, so the failure says what the program said.
    public var description: String {
        "exit \(status)\(timedOut ? " (stopped at its deadline)" : "")\n--- stdout\n\(standardOutput)--- stderr\n\(standardError)"
    }
}

/// Runs a program to its end, in `directory` when given, and waits at most
/// `timeout` seconds: a hang is an answer, not a stuck test run. Output goes
/// through files, not pipes, so a chatty program cannot fill a pipe buffer
/// and block while this side waits for it to exit.
public func runProgram(_ program: String, _ arguments: [String], in directory: URL? = nil,
                       timeout: TimeInterval = 300) throws -> ProgramOutcome {
    let capture = try Scratch("capture")
    let stdoutURL = capture.url.appendingPathComponent("stdout")
    let stderrURL = capture.url.appendingPathComponent("stderr")
    try Data().write(to: stdoutURL)
    try Data().write(to: stderrURL)
    let stdout = try FileHandle(forWritingTo: stdoutURL)
    let stderr = try FileHandle(forWritingTo: stderrURL)

    let process = Process()
    process.executableURL = URL(fileURLWithPath: program)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    let timedOut = process.isRunning
    if timedOut {
        process.terminate()
        process.waitUntilExit()
    }
    try stdout.close()
    try stderr.close()
    return ProgramOutcome(status: process.terminationStatus,
                          standardOutput: String(decoding: try Data(contentsOf: stdoutURL), as: UTF8.self),
                          standardError: String(decoding: try Data(contentsOf: stderrURL), as: UTF8.self),
                          timedOut: timedOut)
}
