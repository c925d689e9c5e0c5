import FuzzSupport

// libFuzzer provides main: this file has no top-level code, only the entry.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestABI(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    if let finding = FuzzProperties.requestABI(UnsafeBufferPointer(start: data, count: size)) {
        fatalError("FuzzRequestABI finding: \(finding)")
    }
    return 0
}
