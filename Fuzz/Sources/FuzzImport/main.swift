import Import

// libFuzzer provides main: this file has no top-level code, only the entry.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImport(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    if let finding = ImportFuzzing.check(UnsafeBufferPointer(start: data, count: size)) {
        fatalError("FuzzImport finding: \(finding)")
    }
    return 0
}
