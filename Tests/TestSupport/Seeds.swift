#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The seed for a randomized test: `TRACE_TEST_SEED` when set (to replay a
/// failure or explore), else the test's own fixed one, so runs are repeatable.
public func testSeed(default value: UInt64) -> UInt64 {
    if let raw = getenv("TRACE_TEST_SEED"), let seed = UInt64(String(cString: raw)) { return seed }
    return value
}
