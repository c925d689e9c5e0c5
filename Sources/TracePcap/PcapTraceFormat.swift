import Blkif
import Trace

/// The pcap encoding of a trace (docs/trace-format.md, "pcap encoding"): link type
/// LINKTYPE_USER0, one packet per event, each starting with a 4-byte header.
public enum PcapTraceFormat {
    /// `LINKTYPE_USER0` / `DLT_USER0`.
    public static let linkType: Int32 = 147
    /// The packet header's format version (byte 1): the trace format
    /// version, the same in every packet of a file as in its header packet.
    public static let versions: ClosedRange<UInt8> = UInt8(TraceFormat.versions.lowerBound)...UInt8(TraceFormat.versions.upperBound)
    /// kind, version, vbd (u16 little-endian).
    public static let headerSize = 4
    /// The snapshot length written into pcap files: libpcap's largest, so no
    /// event is ever cut (control lines are the only packets that can grow).
    public static let snapshotLength: Int32 = 262_144

    public enum Kind: UInt8, Sendable, CaseIterable {
        /// The event's canonical text line, UTF-8, no newline.
        case control = 1
        /// A flags byte (bit 0: hold), then the request's ring-slot bytes.
        case request = 2
        /// The response's ring-slot bytes: `expect response` with its id and status.
        case response = 3
    }

    /// Flags byte of a ring-request packet.
    public static let holdFlag: UInt8 = 0x01
    /// Flags bit 1 (version 2): an indirect request; its segment descriptors
    /// follow the ring slot, 8 bytes each.
    public static let indirectFlag: UInt8 = 0x02

    /// The 4-byte packet header.
    static func header(_ kind: Kind, version: UInt8, vbd: UInt16) -> [UInt8] {
        [kind.rawValue, version, UInt8(truncatingIfNeeded: vbd), UInt8(truncatingIfNeeded: vbd >> 8)]
    }
}
