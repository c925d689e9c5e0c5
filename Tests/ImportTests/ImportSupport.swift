import Foundation
import Harness
@testable import Import
import Recording
import TestSupport
import Trace
import TracePcap

/// The fixtures, each a few dozen lines written for these tests.
enum Fixture {
    static let directory = Repository.root.appendingPathComponent("Tests/ImportTests/Fixtures")

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// Every fixture with its format.
    static let all: [(name: String, format: ImportFormat)] = [
        ("blkparse.txt", .blkparse), ("fio-v2.log", .fio), ("fio-v3.log", .fio), ("msr.csv", .msr),
        ("msr.csv.gz", .msr), ("spc.csv", .spc), ("alibaba.csv", .alibaba), ("tencent.csv", .tencent),
    ]
}

/// Imports `file` into `out` with the options given.
func importTrace(_ format: ImportFormat, _ file: String, to out: String, plot: Bool = false,
                 _ configure: (inout ImportOptions) -> Void = { _ in }) throws -> ImportSummary {
    var options = ImportOptions(format: format)
    configure(&options)
    return try TraceImporter.run(path: file, out: out, options: options, plot: plot)
}

/// The ring requests of a recording, in order.
func requests(_ path: String) throws -> [RequestEvent] {
    try PcapTraceReader.readAll(path: path).compactMap { event in
        if case let .request(request) = event.kind { return request }
        return nil
    }
}

/// The milliseconds a recording's ticks add up to.
func tickedMilliseconds(_ path: String) throws -> UInt64 {
    try PcapTraceReader.readAll(path: path).reduce(0) { sum, event in
        if case let .tick(milliseconds) = event.kind { return sum + milliseconds }
        return sum
    }
}

/// The import error of a trace written from `text`, or nil when it imports.
func importError(_ format: ImportFormat, _ text: String, scratch: Scratch, name: String = "bad.txt",
                 _ configure: (inout ImportOptions) -> Void = { _ in }) throws -> ImportError? {
    let file = try scratch.write(name, text: text)
    do {
        _ = try importTrace(format, file, to: scratch.path("bad.pcap"), configure)
        return nil
    } catch let error as ImportError {
        return error
    }
}
