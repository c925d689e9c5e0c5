import Blkif

/// Guest memory as the harness sees it, in two independent views of each
/// page: 8 sector tokens, which stand for the data block I/O moves, and the
/// page's bytes, which a backend parses as structures (indirect segment
/// descriptors). The guest stamps tokens into a write's pages and writes
/// bytes with `write` events; neither view changes the other, since data is
/// judged by identity (tokens) and structures by value (bytes).
///
/// Pages are numbered up from 1 and never reused, so the number indexes the
/// page directly; a released page is absent, reads as zeros and takes no writes.
public final class GuestMemory {
    // Unchecked exclusivity: every access is one call into the table whose
    // closures never reach back into this object, so accesses cannot overlap;
    // the runtime check cost more than the lookup on this per-segment path.
    @exclusivity(unchecked) private var pages = NumberedTable<SIMD8<UInt64>>()
    private var next: UInt64 = 1
    /// The byte view: only pages the guest ever wrote bytes into are here
    /// (the rest read as zeros), with the writes armed to land between reads.
    private var byteView = GuestByteView()

    public init() {}

    func newPage() -> GuestPage {
        let page = GuestPage(next)
        next += 1
        pages[page.number] = SIMD8<UInt64>()
        return page
    }

    func release(_ page: GuestPage) {
        pages[page.number] = nil
        byteView.release(page)
    }

    public func token(_ page: GuestPage, sector: Int) -> UInt64 { pages[page.number]?[sector] ?? 0 }

    public func setToken(_ page: GuestPage, sector: Int, _ token: UInt64) {
        pages.modify(page.number) { $0[sector] = token }
    }

    /// The guest stamps consecutive tokens into a run of a page's sectors
    /// (`sectors` within 0...7): what `setToken` per sector does, with one
    /// lookup of the page instead of one per sector. A released page takes nothing.
    public func stamp(_ page: GuestPage, sectors: ClosedRange<Int>, firstToken: UInt64) {
        pages.modify(page.number) { tokens in
            // The usual segment is a whole page: its eight tokens are one vector.
            if sectors.lowerBound == 0 && sectors.upperBound == 7 {
                tokens = SIMD8(repeating: firstToken) &+ SIMD8(0, 1, 2, 3, 4, 5, 6, 7)
                return
            }
            var token = firstToken
            for sector in sectors {
                tokens[sector] = token
                token &+= 1
            }
        }
    }

    /// A whole page at once, for the block device's transfers.
    func tokens(of page: GuestPage) -> SIMD8<UInt64> { pages[page.number] ?? SIMD8<UInt64>() }

    /// A device read: `disk`'s sectors from `diskSector` on land in the page's
    /// `sectors`. A released guest page takes nothing, as a whole-page write
    /// to it would.
    func receive(from disk: Ramdisk, sectors: ClosedRange<Int>, at diskSector: UInt64, into page: GuestPage) {
        pages.modify(page.number) { tokens in disk.read(into: &tokens, pageSectors: sectors, from: diskSector) }
    }

    // MARK: Bytes

    /// The guest writes `bytes` at `offset` of `page` now. A released page takes nothing.
    public func writeBytes(_ page: GuestPage, offset: Int, _ bytes: [UInt8]) {
        guard pages[page.number] != nil else { return }
        byteView.write(page, offset: offset, bytes)
    }

    /// The guest arms a write of `bytes` at `offset` of `page`: it lands
    /// right after the backend's `afterReads`-th read of any byte it covers.
    public func armWrite(_ page: GuestPage, offset: Int, _ bytes: [UInt8], afterReads: Int) {
        guard pages[page.number] != nil else { return }
        byteView.arm(ArmedWrite(page: page, offset: offset, bytes: bytes, readsLeft: afterReads))
    }

    /// `count` bytes from `offset` of `page` as they stand, for observers:
    /// not a backend read, so no armed write counts it.
    public func bytes(_ page: GuestPage, offset: Int, count: Int) -> [UInt8] {
        byteView.bytes(page, offset: offset, count: count)
    }

    /// Writes armed and not landed yet, in arming order.
    public var armedWrites: [ArmedWrite] { byteView.armed }

    /// A backend reads `count` bytes from `offset` of `page` (through a
    /// mapping the grant table has checked): the bytes as they are, after
    /// which every armed write that this read brings to its count lands.
    func backendRead(_ page: GuestPage, offset: Int, count: Int) -> (bytes: [UInt8], landed: [ArmedWrite]) {
        let bytes = byteView.bytes(page, offset: offset, count: count)
        return (bytes, byteView.countRead(page, offset: offset, count: count))
    }
}
