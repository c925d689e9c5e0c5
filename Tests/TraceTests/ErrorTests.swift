import TestSupport
import Testing
import Trace

/// The error for `body`, read after a header line (so `body` starts on line 2).
private func error(in body: String, header: String = "xenblk-trace 1\n") -> String {
    do {
        let events = try TextTraceReader.parseAll(text: header + body, file: "t.trace")
        return "no error; read \(events.count) events"
    } catch {
        return error.description
    }
}

/// One test per class of error; each checks file, line, column and wording exactly.
@Suite struct ErrorTests {
    @Test func unknownKeyword() {
        #expect(error(in: "gran gref=5") == "t.trace:2:1: unknown keyword 'gran'; expected one of frontend-key, frontend-key-hex, connect, grant, revoke, fail, request, raw, complete, expect, disconnect, indirect, write, tick, param, generations")
        #expect(error(in: "connect domid=1\n  xenblk-trace 1") == "t.trace:3:3: unknown keyword 'xenblk-trace'; expected one of frontend-key, frontend-key-hex, connect, grant, revoke, fail, request, raw, complete, expect, disconnect, indirect, write, tick, param, generations")
    }

    @Test func unknownKey() {
        #expect(error(in: "connect domid=7\ngrant gerf=5") == "t.trace:3:7: unknown key 'gerf' for 'grant'; expected one of gref, ro, domid")
        #expect(error(in: "grant\tgerf=5") == "t.trace:2:7: unknown key 'gerf' for 'grant'; expected one of gref, ro, domid")
        #expect(error(in: "fail alloc gref=1") == "t.trace:2:12: unknown key 'gref' for 'fail alloc'; expected nth")
        #expect(error(in: "expect response id=1 status=okay vdb=1") == "t.trace:2:34: unknown key 'vdb' for 'expect response'; expected one of id, status, vbd")
    }

    @Test func unexpectedWord() {
        #expect(error(in: "grant gref=5 rw domid=1") == "t.trace:2:14: unexpected word 'rw' for 'grant'; expected one of gref, ro, domid")
        #expect(error(in: "frontend-key a b c") == "t.trace:2:18: unexpected 'c' after the value of 'frontend-key'; expected frontend-key NAME VALUE, the value one word without spaces")
        #expect(error(in: "fail mop nth=1") == "t.trace:2:6: unknown fault 'mop' for 'fail'; expected one of map, alloc, hypercall")
        #expect(error(in: "expect responses id=1") == "t.trace:2:8: unknown expectation 'responses' for 'expect'; expected one of response, persistent=N, violation")
        #expect(error(in: "expect persistent=1 x") == "t.trace:2:21: unexpected word 'x' for 'expect persistent'; expected one of persistent, vbd")
    }

    @Test func flagsAndValues() {
        #expect(error(in: "grant gref=1 ro=1 domid=1") == "t.trace:2:14: 'ro' is a flag of 'grant' and takes no value; expected 'ro' alone")
        #expect(error(in: "connect domid") == "t.trace:2:9: key 'domid' needs a value; expected domid=1..32767")
        #expect(error(in: "request id= op=read sector=0") == "t.trace:2:12: missing value for 'id'; expected id=N")
    }

    @Test func repeatedKey() {
        #expect(error(in: "connect domid=7 vbd=1 domid=8") == "t.trace:2:23: repeated key 'domid' for 'connect'; each key may appear once")
        #expect(error(in: "grant gref=1 ro ro domid=2") == "t.trace:2:17: repeated flag 'ro' for 'grant'; each flag may appear once")
        #expect(error(in: "expect persistent=1 persistent=2") == "t.trace:2:21: repeated key 'persistent' for 'expect persistent'; each key may appear once")
    }

    @Test func missingKey() {
        #expect(error(in: "request id=1 sector=0") == "t.trace:2:1: missing required key 'op' for 'request'; expected op=read|write|barrier|flush|discard|N")
        #expect(error(in: "  connect vbd=1") == "t.trace:2:3: missing required key 'domid' for 'connect'; expected domid=1..32767")
        #expect(error(in: "fail map status=-1") == "t.trace:2:1: missing required key 'gref' or 'nth' for 'fail map'; expected gref=N or nth=K")
        #expect(error(in: "fail map gref=1") == "t.trace:2:1: missing required key 'status' for 'fail map'; expected status=S (a GNTST name such as general_error, or its number)")
        #expect(error(in: "fail") == "t.trace:2:1: missing fault for 'fail'; expected one of map, alloc, hypercall")
        #expect(error(in: "expect") == "t.trace:2:1: missing expectation for 'expect'; expected one of response, persistent=N, violation")
        #expect(error(in: "expect persistent") == "t.trace:2:8: key 'persistent' needs a value; expected persistent=N")
        #expect(error(in: "frontend-key feature-persistent") == "t.trace:2:1: missing VALUE for 'frontend-key'; expected frontend-key NAME VALUE")
        #expect(error(in: "frontend-key-hex") == "t.trace:2:1: missing NAME for 'frontend-key-hex'; expected frontend-key-hex NAME [HEX]")
        #expect(error(in: "frontend-key-hex k 20 x") == "t.trace:2:23: unexpected 'x' after the value of 'frontend-key-hex'; expected frontend-key-hex NAME [HEX]")
        #expect(error(in: "frontend-key-hex k 2") == "t.trace:2:20: 'HEX' has 1 hex digits, an odd count; expected two digits per byte")
        #expect(error(in: "frontend-key-hex k ff") == "t.trace:2:20: the value's bytes are not UTF-8; expected the hex of a UTF-8 xenstore value")
        #expect(error(in: "frontend-key") == "t.trace:2:1: missing NAME and VALUE for 'frontend-key'; expected frontend-key NAME VALUE")
        #expect(error(in: "raw vbd=1") == "t.trace:2:1: missing required key 'hex' for 'raw'; expected hex=HEX")
        #expect(error(in: "complete") == "t.trace:2:1: missing required key 'id' for 'complete'; expected id=N")
    }

    @Test func conflictingKeys() {
        #expect(error(in: "fail map gref=1 nth=2 status=-1") == "t.trace:2:17: 'fail map' takes gref= or nth=, not both; expected one of them")
        #expect(error(in: "fail map nth=2 times=2 status=-1") == "t.trace:2:16: 'times' counts the failures of one gref; expected it only with gref=, not nth=")
        #expect(error(in: "request id=1 op=discard sector=0 seg=1:0-7") == "t.trace:2:34: a discard request carries no segments (nr_sectors takes their place); expected nr-sectors= instead of seg=")
    }

    @Test func outOfRangeU64() {
        #expect(error(in: "complete id=18446744073709551616") == "t.trace:2:13: '18446744073709551616' is out of range for 'id'; expected 0..18446744073709551615")
        #expect(error(in: "request id=1 op=read sector=-1") == "t.trace:2:29: '-1' is not a number for 'sector'; expected 0..18446744073709551615 in decimal or 0x hex")
        #expect(error(in: "request id=1 op=read sector=0x") == "t.trace:2:29: '0x' is not a number for 'sector'; expected 0..18446744073709551615 in decimal or 0x hex")
        #expect(error(in: "request id=1 op=discard sector=0 nr-sectors=0x10000000000000000") == "t.trace:2:45: '0x10000000000000000' is out of range for 'nr-sectors'; expected 0..18446744073709551615")
        #expect(error(in: "connect domid=1 sectors=0X10") == "t.trace:2:25: '0X10' is not a number for 'sectors'; expected 0..18446744073709551615 in decimal or 0x hex")
    }

    @Test func outOfRangeU32() {
        #expect(error(in: "grant gref=4294967296 domid=1") == "t.trace:2:12: '4294967296' is out of range for 'gref'; expected 0..4294967295")
        #expect(error(in: "grant gref=1..0x100000000 domid=1") == "t.trace:2:15: '0x100000000' is out of range for 'gref'; expected 0..4294967295")
        #expect(error(in: "request id=1 op=read sector=0 seg=4294967296:0-7") == "t.trace:2:35: '4294967296' is out of range for 'seg gref'; expected 0..4294967295")
        #expect(error(in: "fail map gref=-5 status=-1") == "t.trace:2:15: '-5' is not a number for 'gref'; expected 0..4294967295 in decimal or 0x hex")
    }

    @Test func outOfRangeU8() {
        #expect(error(in: "request id=1 op=read sector=0 seg=1:256-7") == "t.trace:2:37: '256' is out of range for 'seg first_sect'; expected 0..255")
        #expect(error(in: "request id=1 op=read sector=0 seg=1:0-0x100") == "t.trace:2:39: '0x100' is out of range for 'seg last_sect'; expected 0..255")
        #expect(error(in: "request id=1 op=read sector=0 nr=256") == "t.trace:2:34: '256' is out of range for 'nr'; expected 0..255")
        #expect(error(in: "request id=1 op=256 sector=0") == "t.trace:2:17: '256' is out of range for 'op'; expected 0..255")
    }

    @Test func outOfRangeU16() {
        #expect(error(in: "request id=1 op=read sector=0 handle=65536") == "t.trace:2:38: '65536' is out of range for 'handle'; expected 0..65535")
        #expect(error(in: "disconnect vbd=65536") == "t.trace:2:16: '65536' is out of range for 'vbd'; expected 0..65535")
        #expect(error(in: "raw hex=00 vbd=0x10000") == "t.trace:2:16: '0x10000' is out of range for 'vbd'; expected 0..65535")
    }

    @Test func outOfRangeDomid() {
        #expect(error(in: "connect domid=0") == "t.trace:2:15: '0' is out of range for 'domid'; expected 1..32767")
        #expect(error(in: "connect domid=32768") == "t.trace:2:15: '32768' is out of range for 'domid'; expected 1..32767")
        #expect(error(in: "revoke gref=1 domid=0x8000") == "t.trace:2:21: '0x8000' is out of range for 'domid'; expected 1..32767")
    }

    @Test func outOfRangeCounts() {
        #expect(error(in: "connect domid=1 max-persistent=-1") == "t.trace:2:32: '-1' is not a number for 'max-persistent'; expected 0..9223372036854775807 in decimal or 0x hex")
        #expect(error(in: "connect domid=1 max-persistent=9223372036854775808") == "t.trace:2:32: '9223372036854775808' is out of range for 'max-persistent'; expected 0..9223372036854775807")
        #expect(error(in: "fail map gref=1 times=0 status=-1") == "t.trace:2:23: '0' is out of range for 'times'; expected 1..9223372036854775807")
        #expect(error(in: "fail alloc nth=0") == "t.trace:2:16: '0' is out of range for 'nth'; expected 1..9223372036854775807")
        #expect(error(in: "fail hypercall nth=x") == "t.trace:2:20: 'x' is not a number for 'nth'; expected 1..9223372036854775807 in decimal or 0x hex")
        #expect(error(in: "expect persistent=x") == "t.trace:2:19: 'x' is not a number for 'persistent'; expected 0..9223372036854775807 in decimal or 0x hex")
    }

    @Test func badChoices() {
        #expect(error(in: "connect domid=1 flush=2") == "t.trace:2:23: '2' is not valid for 'flush'; expected 0 or 1")
        #expect(error(in: "connect domid=1 persistent=yes") == "t.trace:2:28: 'yes' is not valid for 'persistent'; expected 0 or 1")
        #expect(error(in: "connect domid=1 protocol=x86") == "t.trace:2:26: unknown protocol 'x86' for 'protocol'; expected native, x86_32 or x86_64")
        #expect(error(in: "request id=1 op=reed sector=0") == "t.trace:2:17: unknown operation 'reed' for 'op'; expected read, write, barrier, flush, discard or a number 0..255")
        #expect(error(in: "frontend-key feature=persistent 1") == "t.trace:2:21: '=' cannot appear in the xenstore key 'feature=persistent'; expected letters, digits, -, /, _ or @")
    }

    @Test func badHex() {
        #expect(error(in: "raw hex=00zz") == "t.trace:2:11: 'z' is not a hex digit in 'hex'; expected 0-9, a-f or A-F")
        #expect(error(in: "raw hex=0x00") == "t.trace:2:10: 'x' is not a hex digit in 'hex'; expected 0-9, a-f or A-F")
        #expect(error(in: "raw hex=") == "t.trace:2:9: missing value for 'hex'; expected hex=HEX")
    }

    @Test func oddHexLength() {
        #expect(error(in: "raw hex=abc vbd=1") == "t.trace:2:9: 'hex' has 3 hex digits, an odd count; expected two digits per byte")
    }

    @Test func badGrefRange() {
        #expect(error(in: "grant gref=9..5 domid=1") == "t.trace:2:12: gref range '9..5' is reversed; expected A..B with A <= B")
        #expect(error(in: "grant gref=5.. domid=1") == "t.trace:2:15: '' is not a number for 'gref'; expected 0..4294967295 in decimal or 0x hex")
        #expect(error(in: "revoke gref=1...3 domid=1") == "t.trace:2:16: '.3' is not a number for 'gref'; expected 0..4294967295 in decimal or 0x hex")
        #expect(error(in: "grant gref=1-3 domid=1") == "t.trace:2:12: '1-3' is not a number for 'gref'; expected 0..4294967295 in decimal or 0x hex")
    }

    @Test func badSegment() {
        #expect(error(in: "request id=1 op=read sector=0 seg=5") == "t.trace:2:35: '5' is not a segment; expected seg=GREF:FIRST-LAST, e.g. seg=5:0-7")
        #expect(error(in: "request id=1 op=read sector=0 seg=5:0") == "t.trace:2:35: '5:0' is not a segment; expected seg=GREF:FIRST-LAST, e.g. seg=5:0-7")
    }

    @Test func missingHeader() {
        #expect(error(in: "", header: "") == "t.trace:1:1: the trace ends before its header; expected 'xenblk-trace 1' or 'xenblk-trace 2' as the first line")
        #expect(error(in: "# only a comment\n\n", header: "") == "t.trace:2:1: the trace ends before its header; expected 'xenblk-trace 1' or 'xenblk-trace 2' as the first line")
        #expect(error(in: "# c\nconnect domid=1\n", header: "") == "t.trace:2:1: found 'connect' where the header belongs; expected 'xenblk-trace 1' or 'xenblk-trace 2' as the first line")
    }

    @Test func wrongHeader() {
        #expect(error(in: "", header: "xenblk-trace 3\n") == "t.trace:1:14: unsupported trace version '3'; expected 'xenblk-trace 1' or 'xenblk-trace 2'")
        #expect(error(in: "", header: "xenblk-trace 2.0\n") == "t.trace:1:14: unsupported trace version '2.0'; expected 'xenblk-trace 1' or 'xenblk-trace 2'")
        #expect(error(in: "", header: "xenblk-trace\n") == "t.trace:1:1: the header has no version; expected 'xenblk-trace 1' or 'xenblk-trace 2'")
        #expect(error(in: "", header: "xenblk-trace 1 extra\n") == "t.trace:1:16: unexpected 'extra' after the header; expected 'xenblk-trace 1' alone")
        #expect(error(in: "", header: "xenblk-trace 01\n") == "t.trace:1:14: unsupported trace version '01'; expected 'xenblk-trace 1' or 'xenblk-trace 2'")
    }

    @Test func moreThanElevenSegments() {
        let segments = Array(repeating: "seg=1:0-7", count: 12).joined(separator: " ")
        #expect(error(in: "request id=1 op=read sector=0 \(segments)") == "t.trace:2:141: more than 11 seg= for 'request'; a ring slot carries at most 11 segments")
    }

    @Test func nrSectorsOnNonDiscard() {
        #expect(error(in: "request id=1 op=write sector=0 nr-sectors=8") == "t.trace:2:32: 'nr-sectors' is only carried by op=discard; this request has op=write")
        #expect(error(in: "request id=1 op=7 sector=0 nr-sectors=8") == "t.trace:2:28: 'nr-sectors' is only carried by op=discard; this request has op=7")
    }

    @Test func grantBeforeConnectWithoutDomid() {
        #expect(error(in: "grant gref=5") == "t.trace:2:1: 'grant' before any connect needs its domain; expected domid=1..32767")
        #expect(error(in: "revoke gref=5 ro") == "t.trace:2:15: unexpected word 'ro' for 'revoke'; expected one of gref, domid")
        #expect(error(in: "\trevoke gref=5") == "t.trace:2:2: 'revoke' before any connect needs its domain; expected domid=1..32767")
    }

    @Test func badCheckID() {
        let checks = "tree-count, tree-order, tree-balance, tree-contents, tree-mapping, grant-limit, map-ops, unmap-bitmap, unmap-ops, request-leak, response, data, access-unmapped, unmap-in-use, teardown, use-after-free, double-free, panic, negotiation, overflow-alert, expect, response-slot, host-leak, double-fetch, grant-states"
        #expect(error(in: "expect violation tree-cnt") == "t.trace:2:18: unknown check 'tree-cnt'; expected one of \(checks)")
        #expect(error(in: "expect violation backend=seed") == "t.trace:2:18: missing check before 'backend=seed' in 'expect violation'; expected one of \(checks)")
        #expect(error(in: "expect violation") == "t.trace:2:8: missing check after 'expect violation'; expected one of \(checks)")
        #expect(error(in: "expect violation panic backend=Seed") == "t.trace:2:32: 'S' cannot appear in the backend name 'Seed'; expected a-z, 0-9, _, +, - or .")
        #expect(error(in: "expect violation panic teardown") == "t.trace:2:24: unexpected word 'teardown' for 'expect violation'; expected backend")
    }

    @Test func badStatusName() {
        let names = "general_error, bad_domain, bad_gntref, bad_handle, bad_virt_addr, bad_dev_addr, no_device_space, permission_denied, bad_page, bad_copy_arg, address_too_big, eagain, no_space"
        #expect(error(in: "fail map nth=1 status=generic_error") == "t.trace:2:23: unknown grant status 'generic_error' for 'status'; expected one of \(names) or a number -1..-13")
        #expect(error(in: "fail map nth=1 status=-14") == "t.trace:2:23: unknown grant status '-14' for 'status'; expected one of \(names) or a number -1..-13")
        #expect(error(in: "fail map nth=1 status=1") == "t.trace:2:23: unknown grant status '1' for 'status'; expected one of \(names) or a number -1..-13")
        #expect(error(in: "expect response id=1 status=ok") == "t.trace:2:29: unknown response status 'ok' for 'status'; expected okay, error or eopnotsupp")
    }

    @Test func okayIsNoFault() {
        #expect(error(in: "fail map gref=1 status=okay") == "t.trace:2:24: status=okay is no fault; expected a failing grant status such as general_error or -1")
        #expect(error(in: "fail map nth=1 status=0") == "t.trace:2:23: status=0 is no fault; expected a failing grant status such as general_error or -1")
        #expect(error(in: "fail map nth=1 status=-0") == "t.trace:2:23: status=-0 is no fault; expected a failing grant status such as general_error or -1")
    }

    @Test func columnsCountUnicodeScalars() {
        #expect(error(in: "frontend-key x é-ü\ngrant gref=日本") == "t.trace:3:12: '日本' is not a number for 'gref'; expected 0..4294967295 in decimal or 0x hex")
        #expect(error(in: "frontend-key déjà 1") == "t.trace:2:15: 'é' cannot appear in the xenstore key 'déjà'; expected letters, digits, -, /, _ or @")
        #expect(error(in: "frontend-key a\u{301}b x") == "t.trace:2:15: '\u{301}' cannot appear in the xenstore key 'a\u{301}b'; expected letters, digits, -, /, _ or @")
    }

    @Test func messagesStayOnOneLine() {
        #expect(error(in: "connect domid=1\u{0B}") == "t.trace:2:15: '1\\u{b}' is not a number for 'domid'; expected 1..32767 in decimal or 0x hex")
        #expect(error(in: "", header: "\u{FEFF}xenblk-trace 1\n") == "t.trace:1:1: found '\\u{feff}xenblk-trace' where the header belongs; expected 'xenblk-trace 1' or 'xenblk-trace 2' as the first line")
        let long = String(repeating: "z", count: 100)
        #expect(error(in: long) == "t.trace:2:1: unknown keyword '\(String(repeating: "z", count: 40))…'; expected one of frontend-key, frontend-key-hex, connect, grant, revoke, fail, request, raw, complete, expect, disconnect, indirect, write, tick, param, generations")
    }

    /// A reader that failed does not guess where to resume: it keeps failing.
    @Test func errorsAreFinal() throws {
        var reader = TextTraceReader(text: "xenblk-trace 1\nbogus\ndisconnect\n", file: "t.trace")
        var first: TraceError?
        do { _ = try reader.next() } catch { first = error }
        #expect(first?.position == .line(2, column: 1))
        var second: TraceError?
        do { _ = try reader.next() } catch { second = error }
        #expect(second == first)
    }
}

/// Found by FuzzTraceText: a carriage return inside a line used to end up in a
/// frontend-key value whose canonical text did not read back.
@Suite struct CarriageReturnTests {
    @Test func aStrayCarriageReturnSeparatesTokens() throws {
        let events = try TextTraceReader.parseAll(text: "xenblk-trace 1\nfrontend-key feature-persistent 1\r# c\n", file: "t.trace")
        #expect(events.map(\.kind) == [.frontendKey(name: "feature-persistent", value: "1")])
        #expect(throws: TraceError.self) {
            try TextTraceReader.parseAll(text: "xenblk-trace 1\nfrontend-key d \r\r\n", file: "t.trace")
        }
    }
}
