import Harness
import TestSupport
import Testing

/// `expect response` reads the latest status per vbd and id, however large
/// the id (small ids are kept by index, others by hash).
@Suite struct ExpectResponseTests {
    @Test func responsesAreKeptPerVbdAndIdWhateverTheId() throws {
        let report = try replay("""
            connect domid=3 persistent=1
            connect domid=3 persistent=1 vbd=1
            grant gref=1..4
            request id=70000 op=write sector=0 seg=1:0-7 vbd=1
            request id=3 op=read sector=0 seg=2:0-7
            request id=4095 op=read sector=0 seg=3:0-7
            request id=4096 op=read sector=0 seg=4:0-7
            request id=9 op=read sector=99999999 seg=4:0-7
            expect response id=70000 status=okay vbd=1
            expect response id=3 status=okay
            expect response id=4095 status=okay
            expect response id=4096 status=okay
            expect response id=9 status=error
            expect response id=3 status=okay vbd=1
            expect response id=70000 status=okay
            """, oracle: false)
        // Only the last two are wrong: id 3 was answered on vbd 0, id 70000 on vbd 1.
        #expect(report.violationCount == 2, "\(report.violations)")
        #expect(report.violations.map(\.violation.seen) == ["no response yet", "no response yet"])
    }
}
