import Blkif
import Foundation
import Harness
import Seeded
import Testing
import Trace
import TracePcap

/// The package's root, from this file's place in Tests/PcapTests.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// A fresh directory for one test's files, removed by `cleanUp`.
struct Scratch {
    let url: URL

    init(_ name: String) throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("pcap-tests-\(getpid())-\(name)-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func cleanUp() { try? FileManager.default.removeItem(at: url) }
}

func bytes(of path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

/// Writes events to a pcap with the writer.
func writePcap(_ kinds: [TraceEventKind], to path: String) throws {
    let writer = try PcapTraceWriter(path: path)
    for kind in kinds { try writer.write(kind) }
    try writer.close()
}

/// A pcap in canonical text, as `replay dump` prints it.
func dumpPcap(_ path: String) throws -> String {
    TextTracePrinter.render(try PcapTraceReader.readAll(path: path).map(\.kind))
}

/// Canonical text → pcap → canonical text.
func throughPcap(_ text: String, file: String, scratch: Scratch) throws -> String {
    let events = try TextTraceReader.parseAll(text: text, file: file)
    let path = scratch.path((file as NSString).lastPathComponent + ".pcap")
    try writePcap(events.map(\.kind), to: path)
    return try dumpPcap(path)
}

/// The first error reading a whole pcap, as one line; "" when it reads.
func readError(_ path: String) -> String {
    do {
        _ = try PcapTraceReader.readAll(path: path)
        return ""
    } catch {
        return error.description
    }
}

// MARK: hand-made capture files (test input only; reading goes through libpcap)

extension Array where Element == UInt8 {
    mutating func le32(_ value: UInt32) { for shift in stride(from: 0, to: 32, by: 8) { append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) } }
    mutating func le16(_ value: UInt16) { append(UInt8(truncatingIfNeeded: value)); append(UInt8(value >> 8)) }
}

/// A classic little-endian pcap file: global header, then one record per packet.
/// `lengths` overrides a record's original length (to fake a short capture).
func classicPcap(linkType: UInt32 = 147, packets: [[UInt8]], originalLengths: [Int: UInt32] = [:]) -> [UInt8] {
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
func pcapng(linkType: UInt16 = 147, packets: [[UInt8]]) -> [UInt8] {
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
func packet(kind: UInt8, version: UInt8 = 1, vbd: UInt16 = 0, _ body: [UInt8]) -> [UInt8] {
    [kind, version, UInt8(truncatingIfNeeded: vbd), UInt8(vbd >> 8)] + body
}

func control(_ text: String, vbd: UInt16 = 0) -> [UInt8] { packet(kind: 1, vbd: vbd, Array(text.utf8)) }

let headerPacket = control("xenblk-trace 1")

// MARK: random traces the pcap encoding can carry


/// Random canonical events that pcap can carry: requests and raws only on
/// vbds connected before (raws of the protocol's size), edge values often.
struct PcapEventGenerator {
    var rng: SplitMix64
    private var protocols: [UInt16: BlkifProtocol] = [:]
    private var latestDomid: UInt16?

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func coin() -> Bool { Bool.random(using: &rng) }

    mutating func number<T: FixedWidthInteger>(_ range: ClosedRange<T> = T.min...T.max) -> T {
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: range.lowerBound
        case 1: range.upperBound
        case 2: T.random(in: range.lowerBound...min(range.upperBound, range.lowerBound + 20), using: &rng)
        default: T.random(in: range, using: &rng)
        }
    }

    mutating func vbd() -> UInt16 { [0, 0, 1, 7, UInt16.max].randomElement(using: &rng)! }

    mutating func trace(count: Int) -> [TraceEventKind] {
        protocols = [:]
        latestDomid = nil
        return (0..<count).map { _ in event() }
    }

    mutating func event() -> TraceEventKind {
        switch Int.random(in: 0..<12, using: &rng) {
        case 0, 1:
            let event = ConnectEvent(domid: number(1...32767), protocolName: BlkifProtocol.allCases.randomElement(using: &rng)!,
                                     persistent: [nil, true, false].randomElement(using: &rng)!, backendPersistent: coin(),
                                     maxPersistent: coin() ? nil : number(0...400), sectors: coin() ? 2_097_152 : number(),
                                     flush: coin(), discard: coin(), vbd: vbd())
            protocols[event.vbd] = event.protocolName
            latestDomid = event.domid
            return .connect(event)
        case 2:
            let first: UInt32 = number()
            return .grant(GrantEvent(grefs: first...(coin() ? first : first + UInt32.random(in: 0...(UInt32.max - first), using: &rng)),
                                     readOnly: coin(), domid: latestDomid.map { coin() ? $0 : 9 } ?? 9))
        case 3:
            return .revoke(RevokeEvent(grefs: 5...9, domid: latestDomid ?? 3))
        case 4:
            return [.fail(.mapGref(gref: number(), times: number(1...5), status: .generalError)),
                    .fail(.allocNth(nth: number(1...9))), .fail(.hypercallNth(nth: 2)),
                    .fail(.mapNth(nth: 1, status: .eagain)), .frontendKey(name: "feature-persistent", value: "1")]
                .randomElement(using: &rng)!
        case 5, 6, 7:
            guard let vbd = protocols.keys.randomElement(using: &rng) else { return .disconnect(vbd: vbd()) }
            return request(vbd: vbd)
        case 8:
            guard let vbd = protocols.keys.randomElement(using: &rng) else { return .complete(id: 1, vbd: 0) }
            var bytes = (0..<protocols[vbd]!.request.size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if coin() { for index in 24..<bytes.count { bytes[index] = 0 } }   // sometimes close to canonical
            let raw = RawRequestEvent(bytes: bytes, vbd: vbd, hold: coin())
            // A raw that happens to be a request's bytes is printed as that request.
            if let request = RequestEvent(ringBytes: bytes, protocol: protocols[vbd]!, vbd: vbd, hold: raw.hold) {
                return .request(request)
            }
            return .raw(raw)
        case 9:
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: return .expect(.response(id: number(), status: BlkifResponseStatus.allCases.randomElement(using: &rng)!), vbd: vbd())
            case 1: return .expect(.persistent(count: number(0...400)), vbd: vbd())
            default: return .expect(.violation(CheckID.allCases.randomElement(using: &rng)!, backend: coin() ? nil : "seed"), vbd: 0)
            }
        case 10:
            return .complete(id: number(), vbd: vbd())
        default:
            return .disconnect(vbd: vbd())
        }
    }

    mutating func request(vbd: UInt16) -> TraceEventKind {
        let named: [UInt8] = [0, 1, 2, 3, 5]
        let operation: UInt8 = coin() ? named.randomElement(using: &rng)! : number()
        var event = RequestEvent(id: number(), operation: operation, sector: number(), handle: coin() ? 0 : number(),
                                 vbd: vbd, hold: coin())
        if operation == BlkifOperation.discard.rawValue {
            event.nrSectors = coin() ? nil : number()
        } else {
            event.segments = (0..<Int.random(in: 0...11, using: &rng)).map { _ in
                BlkifSegment(gref: number(), firstSect: number(), lastSect: number())
            }
        }
        if coin() { event.nrSegments = number() }
        return .request(event.canonical)
    }
}
