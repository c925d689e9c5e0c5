import Blkif

/// A guest write armed to land between two backend reads: once the backend
/// has read any byte of `offset ..< offset + bytes.count` of `page`
/// `readsLeft` more times, the bytes are written, right after that read
/// returned. This is how a trace races the backend deterministically (a
/// guest rewriting a descriptor between the read that uses it and the read
/// that checks it, XSA-155).
public struct ArmedWrite: Hashable, Sendable {
    public let page: GuestPage
    public let offset: Int
    public let bytes: [UInt8]
    public fileprivate(set) var readsLeft: Int

    public init(page: GuestPage, offset: Int, bytes: [UInt8], readsLeft: Int) {
        precondition(readsLeft >= 1, "an armed write waits for at least one read")
        precondition(offset >= 0 && offset + bytes.count <= Blkif.pageSize, "an armed write stays inside its page")
        self.page = page
        self.offset = offset
        self.bytes = bytes
        self.readsLeft = readsLeft
    }

    /// Whether a read of `count` bytes from `offset` of `page` touches any byte this write covers.
    func overlaps(_ page: GuestPage, offset: Int, count: Int) -> Bool {
        self.page == page && offset < self.offset + bytes.count && self.offset < offset + count
    }
}

/// The byte view of guest memory. Pages are stored only once written (a
/// trace writes bytes into a handful of descriptor pages), so the usual page
/// costs nothing here.
struct GuestByteView {
    private var pages: [UInt64: [UInt8]] = [:]
    /// Writes waiting for their read, in arming order (several may land on
    /// the same read; they land in that order).
    private(set) var armed: [ArmedWrite] = []

    mutating func write(_ page: GuestPage, offset: Int, _ bytes: [UInt8]) {
        precondition(offset >= 0 && offset + bytes.count <= Blkif.pageSize, "a write stays inside its page")
        pages[page.number, default: [UInt8](repeating: 0, count: Blkif.pageSize)]
            .replaceSubrange(offset..<offset + bytes.count, with: bytes)
    }

    mutating func arm(_ write: ArmedWrite) { armed.append(write) }

    /// A page's bytes (zeros where never written).
    func bytes(_ page: GuestPage, offset: Int, count: Int) -> [UInt8] {
        precondition(offset >= 0 && count >= 0 && offset + count <= Blkif.pageSize, "a read stays inside its page")
        guard let stored = pages[page.number] else { return [UInt8](repeating: 0, count: count) }
        return Array(stored[offset..<offset + count])
    }

    /// Counts one backend read against every armed write it touches and
    /// lands those whose count it completes; returns them, in arming order.
    mutating func countRead(_ page: GuestPage, offset: Int, count: Int) -> [ArmedWrite] {
        guard !armed.isEmpty else { return [] }
        var landed: [ArmedWrite] = []
        var waiting: [ArmedWrite] = []
        for var write in armed {
            if write.overlaps(page, offset: offset, count: count) {
                write.readsLeft -= 1
                if write.readsLeft == 0 {
                    self.write(write.page, offset: write.offset, write.bytes)
                    landed.append(write)
                    continue
                }
            }
            waiting.append(write)
        }
        armed = waiting
        return landed
    }

    /// A page the guest gave up: its bytes and the writes armed on it go.
    mutating func release(_ page: GuestPage) {
        pages[page.number] = nil
        armed.removeAll { $0.page == page }
    }
}
