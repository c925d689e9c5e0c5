import FuzzSupport

// libFuzzer provides main: this file has no top-level code, only the entry.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTraceText(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    if let finding = FuzzProperties.traceText(UnsafeBufferPointer(start: data, count: size)) {
        fatalError("FuzzTraceText finding: \(finding)")
    }
    return 0
}
