import Foundation
import Harness
import Trace
import TracePcap

/// Streams a trace from one encoding into the other.
enum TraceConversion {
    /// The number of events converted.
    static func convert(input: String, output: String) throws(TraceError) -> Int {
        var source = try TraceFile.open(path: input)
        // The header comes with the first event: the output keeps the input's version.
        var pending = try source.next()
        let version = source.formatVersion
        func nextEvent() throws(TraceError) -> TraceEvent? {
            if let event = pending.take() { return event }
            return try source.next()
        }
        var count = 0
        if TraceFile.isPcap(path: output) {
            let writer: PcapTraceWriter
            do { writer = try PcapTraceWriter(path: output, version: version) } catch {
                throw TraceError(file: output, position: .packet(0), message: error.message)
            }
            while let event = try nextEvent() {
                do { try writer.write(event.kind) } catch {
                    throw TraceError(file: input, position: event.position, message: "cannot be written as pcap: \(error.message)")
                }
                count += 1
            }
            do { try writer.close() } catch { throw TraceError(file: output, position: .packet(0), message: error.message) }
        } else {
            guard let file = TextFile(path: output) else {
                throw TraceError(file: output, position: .line(0, column: 0),
                                 message: "cannot write: \(String(cString: strerror(errno)))")
            }
            var printer = TextTracePrinter()
            file.write(printer.header(version: version))
            while let event = try nextEvent() {
                file.write(printer.line(for: event.kind))
                count += 1
            }
            guard file.close() else {
                throw TraceError(file: output, position: .line(0, column: 0),
                                 message: "cannot write: \(String(cString: strerror(errno)))")
            }
        }
        return count
    }
}

/// A text file written line by line through a buffer.
final class TextFile {
    private var handle: UnsafeMutablePointer<FILE>?
    private var buffer: [UInt8] = []
    private var failed = false

    init?(path: String) {
        guard let handle = fopen(path, "wb") else { return nil }
        self.handle = handle
        buffer.reserveCapacity(1 << 16)
    }

    deinit { if let handle { fclose(handle) } }

    func write(_ line: String) {
        buffer.append(contentsOf: line.utf8)
        buffer.append(UInt8(ascii: "\n"))
        if buffer.count >= 1 << 16 { flush() }
    }

    private func flush() {
        guard let handle, !buffer.isEmpty else { return }
        let written = buffer.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, handle) }
        if written != buffer.count { failed = true }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Whether everything reached the file.
    func close() -> Bool {
        flush()
        guard let handle else { return !failed }
        self.handle = nil
        return fclose(handle) == 0 && !failed
    }
}
