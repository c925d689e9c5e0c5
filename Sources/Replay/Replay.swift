import ArgumentParser

@main
struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replays blkback persistent-grant traces against a backend model and judges them with the oracle.",
        discussion: """
            With no subcommand, replays every trace under the given paths (the conformance gate).
            Exit status: 0 when every trace passes, 1 when one fails, 2 for usage errors and unreadable \
            or malformed traces.
            """,
        subcommands: [Run.self, Dump.self, Matrix.self, Decode.self, Minimize.self, Convert.self, Record.self, Bench.self],
        defaultSubcommand: Run.self)
}
