import Glibc
import Harness

/// The property the FuzzImport target checks: any bytes, as a trace of any
/// format, are an import error or a recording that replays clean under the
/// backend it was recorded against (fixed, or g2013 with indirect requests)
/// — never a crash, a hang, an importer bug or a violation.
public enum ImportFuzzing {
    /// Byte 0 picks the format, byte 1 the options (frontend, blkparse action,
    /// queue depth, G2013 with indirect requests); the rest is the trace file (gzip when it starts 1f 8b).
    public static func options(_ input: UnsafeBufferPointer<UInt8>) -> ImportOptions {
        let formats = ImportFormat.allCases
        var options = ImportOptions(format: formats[Int(input.first ?? 0) % formats.count])
        let flags = input.count > 1 ? input[1] : 0
        options.frontend = flags & 1 == 0 ? .persistent : .legacy
        options.blkparseAction = flags & 2 == 0 ? .D : .Q
        switch (flags >> 2) & 3 {
        case 1: options.queueDepth = .fixed(1)
        case 2: options.queueDepth = .fixed(4)
        case 3: options.queueDepth = options.format.hasCompletions ? .trace : .fixed(32)
        default: break
        }
        if flags & 16 != 0 {
            options.variant = .g2013
            options.indirect = true
        }
        // Bounds that keep one input's work small: a line may ask for a lot.
        options.maxIOBytes = 1 << 20
        options.maxTrimBytes = 1 << 20
        options.maxDevices = 8
        options.maxRecords = 2000
        return options
    }

    /// nil when the property holds, else what broke it.
    public static func check(_ input: UnsafeBufferPointer<UInt8>, directory: String = "/tmp") -> String? {
        let options = options(input)
        // mkstemp: a unique name, so runs in parallel (tests, libFuzzer's forks) never share one.
        var template = Array("\(directory)/xenblk-fuzzimport-XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { return nil }   // no room for a scratch file is not the importer's fault
        let trace = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let out = trace + ".pcap"
        defer {
            unlink(trace)
            unlink(out)
        }
        let body = input.count > 2 ? UnsafeBufferPointer(rebasing: input[2...]) : UnsafeBufferPointer(start: nil, count: 0)
        guard write(body, to: descriptor) else { return nil }
        let summary: ImportSummary
        do {
            summary = try TraceImporter.run(path: trace, out: out, options: options)
        } catch {
            if error.message.contains("importer bug") { return error.description }
            if access(out, F_OK) == 0 { return "\(error): the output was left behind" }
            return nil
        }
        if summary.failed {
            let kept = (summary.written.outcome.kept + summary.compared.outcome.kept).prefix(3)
            return "the oracle found \(summary.written.outcome.count + summary.compared.outcome.count) violation(s) in an import: \(kept)"
        }
        let report = TraceRunner.replay(.file(path: out), variant: options.variant)
        guard report.verdict == .pass else {
            return "the recording does not replay clean: \(report.violations.prefix(3)) \(String(describing: report.traceError))"
        }
        return nil
    }

    /// Writes all of `bytes` to the descriptor and closes it.
    private static func write(_ bytes: UnsafeBufferPointer<UInt8>, to descriptor: Int32) -> Bool {
        defer { close(descriptor) }
        var done = 0
        while done < bytes.count {
            let wrote = Glibc.write(descriptor, bytes.baseAddress! + done, bytes.count - done)
            guard wrote > 0 else { return false }
            done += wrote
        }
        return true
    }
}
