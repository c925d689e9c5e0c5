/// MSR Cambridge (SNIA IOTTA): `Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime`,
/// no header; Timestamp and ResponseTime in Windows FILETIME units of 100 ns,
/// Type `Read` or `Write`, Offset and Size in bytes. The device is `Hostname,DiskNumber`.
struct MSRParser: TraceLineParser {
    var csv = CSVLines(fieldNames: ["Timestamp", "Hostname", "DiskNumber", "Type", "Offset", "Size", "ResponseTime"])

    mutating func parse(_ line: UnsafeBufferPointer<UInt8>) throws(LineProblem) -> TraceLine {
        if let reason = CommonLines.skipReason(line) { return .skip(reason) }
        guard let fields = try csv.fields(line) else { return .skip(.header) }
        let ticks = try fields.number(0, "Timestamp")
        let kind = try fields.operation(3, "Type", read: "Read", write: "Write")
        let response = try fields.number(6, "ResponseTime")
        let (done, overflow) = ticks.addingReportingOverflow(response)
        if overflow { throw LineProblem("Timestamp + ResponseTime overflows 64 bits") }
        return .record(IORecord(device: fields.text(1) + "," + fields.text(2), kind: kind,
                                offset: try fields.number(4, "Offset"), length: try fields.number(5, "Size"),
                                time: try ticks.times(100, "Timestamp"), completion: try done.times(100, "Timestamp + ResponseTime")))
    }
}

/// SPC (UMass Financial, WebSearch): `ASU,LBA,Size,Opcode,Timestamp[,…]`; LBA in
/// 512-byte sectors, Size in bytes, Opcode `r` or `w`, Timestamp in seconds.
/// The device is the ASU.
struct SPCParser: TraceLineParser {
    var csv = CSVLines(fieldNames: ["ASU", "LBA", "Size", "Opcode", "Timestamp"])

    mutating func parse(_ line: UnsafeBufferPointer<UInt8>) throws(LineProblem) -> TraceLine {
        if let reason = CommonLines.skipReason(line) { return .skip(reason) }
        guard let fields = try csv.fields(line) else { return .skip(.header) }
        let device = try fields.number(0, "ASU")
        let kind = try fields.operation(3, "Opcode", read: "r", write: "w")
        return .record(IORecord(device: String(device), kind: kind, offset: try fields.number(1, "LBA").times(512, "LBA"),
                                length: try fields.number(2, "Size"),
                                time: try fields.scaled(4, "Timestamp", fractionDigits: 9)))
    }
}

/// Alibaba block traces: `device_id,opcode,offset,length,timestamp`; opcode `R`
/// or `W`, offset and length in bytes, timestamp in microseconds.
struct AlibabaParser: TraceLineParser {
    var csv = CSVLines(fieldNames: ["device_id", "opcode", "offset", "length", "timestamp"])

    mutating func parse(_ line: UnsafeBufferPointer<UInt8>) throws(LineProblem) -> TraceLine {
        if let reason = CommonLines.skipReason(line) { return .skip(reason) }
        guard let fields = try csv.fields(line) else { return .skip(.header) }
        let device = try fields.number(0, "device_id")
        let kind = try fields.operation(1, "opcode", read: "R", write: "W")
        return .record(IORecord(device: String(device), kind: kind, offset: try fields.number(2, "offset"),
                                length: try fields.number(3, "length"),
                                time: try fields.number(4, "timestamp").times(1000, "timestamp")))
    }
}

/// Tencent CBS: `Timestamp,Offset,Size,IOType,VolumeID`; Timestamp in seconds,
/// Offset and Size in 512-byte sectors, IOType 0 (read) or 1 (write).
struct TencentParser: TraceLineParser {
    var csv = CSVLines(fieldNames: ["Timestamp", "Offset", "Size", "IOType", "VolumeID"])

    mutating func parse(_ line: UnsafeBufferPointer<UInt8>) throws(LineProblem) -> TraceLine {
        if let reason = CommonLines.skipReason(line) { return .skip(reason) }
        guard let fields = try csv.fields(line) else { return .skip(.header) }
        let kind: IORecord.Kind
        switch try fields.number(3, "IOType") {
        case 0: kind = .read
        case 1: kind = .write
        case let other: throw LineProblem("IOType \(other) is neither 0 (read) nor 1 (write)")
        }
        let volume = try fields.number(4, "VolumeID")
        return .record(IORecord(device: String(volume), kind: kind, offset: try fields.number(1, "Offset").times(512, "Offset"),
                                length: try fields.number(2, "Size").times(512, "Size"),
                                time: try fields.scaled(0, "Timestamp", fractionDigits: 9)))
    }
}
