#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs work in a forked child process so that a trap in it (in the backend,
/// the fake Xen or the oracle) is an answer rather than the end of the
/// minimiser: the child reports through its exit code, a crash through the
/// signal that ended it. Fork only from a single-threaded process.
enum CrashIsolation {
    enum Ending: Equatable {
        case exited(Int32)
        case signalled(Int32)
        /// This platform has no fork, or fork failed: nothing ran.
        case unavailable
    }

    /// The signals a Swift trap or a memory error ends a process with.
    private static let crashSignals: [Int32] = [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE]

    static func run(encodingResult work: () -> Int32) -> Ending {
        #if os(Windows)
        return .unavailable
        #else
        let pid = fork()
        if pid == 0 {
            // The child: no crash report or backtrace, just the status. A
            // crash signal becomes exit 128 + signal, as a shell reports it.
            for crash in crashSignals { _ = signal(crash) { _exit(128 + $0) } }
            let null = open("/dev/null", O_WRONLY)
            if null >= 0 { dup2(null, 2); dup2(null, 1) }
            _exit(work())
        }
        guard pid > 0 else { return .unavailable }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signalled = status & 0x7F
        if signalled != 0 { return .signalled(signalled) }
        let code = (status >> 8) & 0xFF
        return code >= 128 ? .signalled(code - 128) : .exited(code)
        #endif
    }
}
