import FuzzSupport

// libFuzzer provides main: this file has no top-level code, only the entry.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPcap(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    if let finding = FuzzProperties.pcap(UnsafeBufferPointer(start: data, count: size)) {
        fatalError("FuzzPcap finding: \(finding)")
    }
    return 0
}
