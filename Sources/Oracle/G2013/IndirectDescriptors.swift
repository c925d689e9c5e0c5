import Blkif
import FakeXen

/// The segment descriptors of an indirect request as a backend that reads
/// each guest byte once must have seen them (docs/generations.md, G2013
/// "Dispatch", indirect parse step 2).
///
/// The page's bytes before the backend's reads come from the oracle's own
/// picture of the guest's bytes (`GuestByteShadow`). During the event an
/// armed guest write may land between two reads; the environment logs each
/// read and each landing in order, so each byte is taken as it stood when
/// it was first read. A byte never read is taken as it stood before any
/// landing.
enum IndirectDescriptors {
    static func read(count: Int, from page: GuestPage, before bytes: [UInt8],
                     observations: [Observation]) -> [BlkifSegment] {
        let size = count * blkifSegmentSize
        var current = bytes
        var firstRead = bytes
        var seen = [Bool](repeating: false, count: size)
        for observation in observations {
            switch observation {
            case .guestRead(let read) where read.page == page:
                for offset in read.range where offset < size && !seen[offset] {
                    seen[offset] = true
                    firstRead[offset] = current[offset]
                }
            case .armedWriteLanded(let write) where write.page == page:
                for (step, byte) in write.bytes.enumerated() where write.offset + step < size {
                    current[write.offset + step] = byte
                }
            default:
                break
            }
        }
        return (0..<count).map { index in
            let offset = index * blkifSegmentSize
            let gref = UInt32(firstRead[offset]) | UInt32(firstRead[offset + 1]) << 8
                | UInt32(firstRead[offset + 2]) << 16 | UInt32(firstRead[offset + 3]) << 24
            return BlkifSegment(gref: gref, firstSect: firstRead[offset + 4], lastSect: firstRead[offset + 5])
        }
    }
}
