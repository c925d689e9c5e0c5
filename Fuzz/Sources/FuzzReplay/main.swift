import FuzzSupport

// libFuzzer provides main: this file has no top-level code, only the entry.
// The backend comes from XENBLK_BACKEND (as `replay --backend` takes it; default fixed).
enum Target {
    static let backend = FuzzProperties.backendFromEnvironment()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzReplay(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    if let finding = FuzzProperties.replay(UnsafeBufferPointer(start: data, count: size), variant: Target.backend) {
        fatalError("FuzzReplay finding under \(finding)")
    }
    return 0
}
