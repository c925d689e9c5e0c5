import Foundation
@testable import Import
import TestSupport
import Testing

@Suite struct ImportErrorTests {
    /// A bad line is one error naming the file and the line; nothing is written.
    @Test(arguments: [
        (ImportFormat.msr, "128166372003061629,web,0,Read,0,4096,10\n128166372003061630,web,0,Erase,0,4096,10\n", 2,
         "Type 'Erase' is neither Read nor Write"),
        (.msr, "128166372003061629,web,0,Read,0,4096\n", 1,
         "expected 7 comma-separated fields (Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime), found 6"),
        (.msr, "1,web,0,Read,-5,4096,10\n", 1, "Offset '-5' is not an unsigned decimal number that fits 64 bits"),
        (.spc, "0,1,4096,w,0.5\n0,1,4096,x,0.6\n", 2, "Opcode 'x' is neither r nor w"),
        (.spc, "0,1,4096,w,1e3\n", 1, "Timestamp '1e3' is not an unsigned decimal number in range"),
        (.alibaba, "1,R,0,4096,10\nheader,R,0,4096,10\n", 2, "device_id 'header' is not an unsigned decimal number that fits 64 bits"),
        (.tencent, "1,0,8,2,5\n", 1, "IOType 2 is neither 0 (read) nor 1 (write)"),
        (.tencent, "1,36028797018963968,8,1,5\n", 1, "Offset 36028797018963968 is too large (the product overflows 64 bits)"),
        (.fio, "fio version 1 iolog\n", 1, "expected the header 'fio version 2 iolog' or 'fio version 3 iolog'"),
        (.fio, "fio version 2 iolog\nf add\nf read 0\n", 3, "'read' needs OFFSET and LENGTH in bytes"),
        (.fio, "fio version 2 iolog\nf scribble 0 4096\n", 2,
         "unknown fio action 'scribble' (expected add, open, close, read, write, trim, sync, datasync or wait)"),
        (.fio, "fio version 3 iolog\nf read 0 4096\n", 2, "TIMESTAMP 'f' is not an unsigned decimal number that fits 64 bits"),
        (.fio, "fio version 2 iolog\nf write 0 134217728\n", 2, "an I/O of 134217728 bytes: more than the 67108864 bytes one record may move"),
        (.fio, "fio version 2 iolog\nf write 18446744073709551615 4096\n", 2, "offset 18446744073709551615 + length 4096 overflows 64 bits"),
        (.blkparse, "  8,0 0 1 0.1 5 D W 8 + 8 [x]\nhello world\n", 2,
         "expected a blkparse event 'MAJ,MIN CPU SEQ SECS.NSECS PID ACTION RWBS SECTOR + COUNT [COMM]', found 'hello world'"),
        (.blkparse, "  8,0 0 1 0.1 5 D w 8 + 8 [x]\n", 1, "RWBS 'w' holds a character that is not an upper-case letter"),
        (.blkparse, "  8,0 0 1 0.1 5 D AS 8 + 8 [x]\n", 1,
         "RWBS 'AS' names no read (R), write (W), discard (D), flush (F) or no-data (N)"),
        (.blkparse, "  8,0 0 1 0.1 5 D W 8 - 8 [x]\n", 1, "expected 'SECTOR + COUNT' after RWBS 'W'"),
        (.blkparse, "  8,0 0 1 x 5 D W 8 + 8 [x]\n", 1, "SECS.NSECS 'x' is not an unsigned decimal number in range"),
    ])
    func aBadLineIsAnErrorAtItsLine(_ format: ImportFormat, _ text: String, _ line: Int, _ message: String) throws {
        let scratch = try Scratch("bad")
        defer { scratch.cleanUp() }
        let error = try #require(try importError(format, text, scratch: scratch))
        #expect(error.file == scratch.path("bad.txt"))
        #expect(error.line == line)
        #expect(error.message == message)
        #expect(error.description == "\(scratch.path("bad.txt")):\(line): \(message)")
        // Neither the output nor its temporary file is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.url.path) == ["bad.txt"])
    }

    @Test func wholeFileErrorsNameLineZero() throws {
        let scratch = try Scratch("file")
        defer { scratch.cleanUp() }
        let missing = scratch.path("missing.csv")
        #expect(throws: ImportError(file: missing, line: 0, "cannot read: No such file or directory")) {
            _ = try importTrace(.msr, missing, to: scratch.path("o.pcap"))
        }
        #expect(try importError(.msr, "", scratch: scratch)?.message == "the trace holds no I/O to import")
        #expect(try importError(.spc, "# only a comment\n\n", scratch: scratch)?.message == "the trace holds no I/O to import")
        #expect(try importError(.fio, "fio version 2 iolog\nf add\n", scratch: scratch)?.line == 0)
        #expect(throws: ImportError(file: scratch.path("x.csv"), line: 0, "spc traces say nothing of completions: give --queue-depth N")) {
            _ = try importTrace(.spc, scratch.path("x.csv"), to: scratch.path("o.pcap")) { $0.queueDepth = .trace }
        }
    }

    @Test func aLongLineIsRefusedNotHeld() throws {
        let scratch = try Scratch("long")
        defer { scratch.cleanUp() }
        let text = "1,web,0,Read,0,4096,10\n" + String(repeating: "9", count: 70_000) + "\n"
        let error = try #require(try importError(.msr, text, scratch: scratch))
        #expect(error.line == 2)
        #expect(error.message == "a line longer than 65536 bytes: not a trace line")
    }

    @Test func aCorruptGzipStreamIsAnError() throws {
        let scratch = try Scratch("gz")
        defer { scratch.cleanUp() }
        var gz = try bytes(of: Fixture.path("msr.csv.gz"))
        gz.removeLast(30)
        let file = try scratch.write("cut.csv.gz", gz)
        let error = #expect(throws: ImportError.self) { _ = try importTrace(.msr, file, to: scratch.path("o.pcap")) }
        // zlib's message names the file too; the error says it once.
        #expect(error?.message == "cannot read: unexpected end of file", "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("o.pcap")))
    }

    @Test func tooManyDevicesNamesTheLine() throws {
        let scratch = try Scratch("devices")
        defer { scratch.cleanUp() }
        let text = (0..<70).map { "\($0),R,0,4096,\($0)" }.joined(separator: "\n")
        let error = try #require(try importError(.alibaba, text, scratch: scratch))
        #expect(error.line == 65)
        #expect(error.message == "a device beyond the first 64 ('64'): import one at a time with --device")
        #expect(try importError(.alibaba, text, scratch: scratch) { $0.device = "69" } == nil)
    }
}
