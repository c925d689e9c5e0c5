import Foundation
import Trace
import TracePcap


/// Writes events to a pcap with the writer.
public func writePcap(_ kinds: [TraceEventKind], to path: String) throws {
    let writer = try PcapTraceWriter(path: path, version: TraceFormat.version(carrying: kinds))
    for kind in kinds { try writer.write(kind) }
    try writer.close()
}

/// A pcap in canonical text, as `replay dump` prints it.
public func dumpPcap(_ path: String) throws -> String {
    TextTracePrinter.render(try PcapTraceReader.readAll(path: path).map(\.kind))
}

/// Canonical text → pcap → canonical text.
public func throughPcap(_ text: String, file: String, scratch: Scratch) throws -> String {
    let events = try TextTraceReader.parseAll(text: text, file: file)
    let path = scratch.path((file as NSString).lastPathComponent + ".pcap")
    try writePcap(events.map(\.kind), to: path)
    return try dumpPcap(path)
}

/// The first error reading a whole pcap, as one line; "" when it reads.
public func readError(_ path: String) -> String {
    do {
        _ = try PcapTraceReader.readAll(path: path)
        return ""
    } catch {
        return error.description
    }
}

// MARK: hand-made capture files (test input only; reading goes through libpcap)

extension Array where Element == UInt8 {
    public mutating func le32(_ value: UInt32) { for shift in stride(from: 0, to: 32, by: 8) { append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) } }
    public mutating func le16(_ value: UInt16) { append(UInt8(truncatingIfNeeded: value)); append(UInt8(value >> 8)) }
}

/// A classic little-endian pcap file: global header, then one record per packet.
/// `lengths` overrides a record's original length (to fake a short capture).
public func classicPcap(linkType: UInt32 = 147, packets: [[UInt8]], originalLengths: [Int: UInt32] = [:]) -> [UInt8] {
    var file: [UInt8] = []
    file.le32(0xA1B2_C3D4)
    file.le16(2)
    file.le16(4)
    file.le32(0)
    file.le32(0)
    file.le32(262_144)
    file.le32(linkType)
    for (index, packet) in packets.enumerated() {
        file.le32(0)
        file.le32(UInt32(index))
        file.le32(UInt32(packet.count))
        file.le32(originalLengths[index] ?? UInt32(packet.count))
        file.append(contentsOf: packet)
    }
    return file
}

/// A minimal pcapng: section header, one interface of `linkType`, one
/// enhanced packet block per packet.
public func pcapng(linkType: UInt16 = 147, packets: [[UInt8]]) -> [UInt8] {
    var file: [UInt8] = []
    // Section Header Block.
    file.le32(0x0A0D_0D0A)
    file.le32(28)
    file.le32(0x1A2B_3C4D)
    file.le16(1)
    file.le16(0)
    file.le32(0xFFFF_FFFF)
    file.le32(0xFFFF_FFFF)   // section length -1: unknown
    file.le32(28)
    // Interface Description Block.
    file.le32(1)
    file.le32(20)
    file.le16(linkType)
    file.le16(0)
    file.le32(262_144)
    file.le32(20)
    // Enhanced Packet Blocks.
    for (index, packet) in packets.enumerated() {
        let padded = (packet.count + 3) / 4 * 4
        let total = UInt32(32 + padded)
        file.le32(6)
        file.le32(total)
        file.le32(0)
        file.le32(0)
        file.le32(UInt32(index))
        file.le32(UInt32(packet.count))
        file.le32(UInt32(packet.count))
        file.append(contentsOf: packet)
        file.append(contentsOf: [UInt8](repeating: 0, count: padded - packet.count))
        file.le32(total)
    }
    return file
}

/// One packet: the 4-byte header and a body.
public func packet(kind: UInt8, version: UInt8 = 1, vbd: UInt16 = 0, _ body: [UInt8]) -> [UInt8] {
    [kind, version, UInt8(truncatingIfNeeded: vbd), UInt8(vbd >> 8)] + body
}

public func control(_ text: String, vbd: UInt16 = 0) -> [UInt8] { packet(kind: 1, vbd: vbd, Array(text.utf8)) }

public let headerPacket = control("xenblk-trace 1")
