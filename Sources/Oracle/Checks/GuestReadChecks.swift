import Blkif
import FakeXen
import Trace

extension Checks {
    /// `double-fetch`: while parsing one request, a backend reads each byte
    /// the guest shares with it at most once (XSA-155). A byte read twice
    /// may have changed in between, so a check made on one read says
    /// nothing of the value used from the other. An event parses at most
    /// one request, so any byte of a guest page read twice in one event is
    /// reported, once per page, where the second read stands in the log.
    static func doubleFetch(_ environment: EnvironmentRecord, into findings: inout [Finding]) {
        // Per page, the bytes read so far this event, a bit each.
        var readBytes: [GuestPage: [UInt64]] = [:]
        var reported: Set<GuestPage> = []
        for (index, observation) in environment.observations.enumerated() {
            guard case .guestRead(let read) = observation, !reported.contains(read.page) else { continue }
            var bits = readBytes[read.page] ?? [UInt64](repeating: 0, count: Blkif.pageSize / 64)
            var again: [Int] = []
            for offset in read.range where offset >= 0 && offset < Blkif.pageSize {
                let mask = UInt64(1) << UInt64(offset % 64)
                if bits[offset / 64] & mask != 0 { again.append(offset) }
                bits[offset / 64] |= mask
            }
            readBytes[read.page] = bits
            guard !again.isEmpty else { continue }
            reported.insert(read.page)
            findings.append(Finding(
                .doubleFetch, in: .environment(at: index),
                expected: "each guest-shared byte read at most once per request",
                seen: "bytes \(Wording.byteRuns(again)) of \(read.page) (gref \(read.gref) of domain \(read.domid)) read again"))
        }
    }
}
