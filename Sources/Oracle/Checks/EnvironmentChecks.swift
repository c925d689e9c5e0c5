import FakeXen
import Trace

/// The environment's alarms: things that must never happen, whatever the
/// event. Each is reported where it stands among the event's observations.
extension Checks {
    /// `use-after-free`: nothing reads, writes or frees memory once it is
    /// freed. (The fake kernel never reuses an address, so every touch of a
    /// freed one is seen.)
    static func useAfterFree(_ environment: EnvironmentRecord, into findings: inout [Finding]) {
        alarms(in: environment, into: &findings) { observation in
            guard case let .useAfterFree(address, access, what) = observation else { return nil }
            return (.useAfterFree, "no access to freed memory", "\(access.rawValue) of \(what) at \(address)")
        }
    }

    /// `double-free`: each object is freed once.
    static func doubleFree(_ environment: EnvironmentRecord, into findings: inout [Finding]) {
        alarms(in: environment, into: &findings) { observation in
            guard case let .doubleFree(address, what) = observation else { return nil }
            return (.doubleFree, "each object freed once", "second free of \(what) at \(address)")
        }
    }

    /// `panic`: no `BUG()` is reachable from a guest. After one, nothing else
    /// in the event is judged: the host is down.
    static func panic(_ environment: EnvironmentRecord, into findings: inout [Finding]) {
        alarms(in: environment, into: &findings) { observation in
            guard case let .panic(message) = observation else { return nil }
            return (.panic, "no BUG() reachable from a guest", message)
        }
    }

    /// `access-unmapped`: block I/O goes only through live mappings, and a
    /// device writes only into writable ones.
    static func accessUnmapped(_ environment: EnvironmentRecord, into findings: inout [Finding]) {
        alarms(in: environment, into: &findings) { observation in
            guard case let .accessUnmapped(page, detail) = observation else { return nil }
            return (.accessUnmapped, "I/O only through live mappings of the right kind", "\(detail) (\(page))")
        }
    }

    /// `unmap-in-use`: nothing is unmapped while I/O still uses the mapping.
    static func unmapInUse(_ environment: EnvironmentRecord, into findings: inout [Finding]) {
        alarms(in: environment, into: &findings) { observation in
            guard case let .unmapInUse(handle, page) = observation else { return nil }
            return (.unmapInUse, "no unmap while I/O uses the mapping",
                    "handle \(handle) of \(page) unmapped with I/O in flight")
        }
    }

    /// `host-leak`: no byte of host memory ever becomes visible to a guest.
    /// The fake kernel marks what its stack held before, and the fake Xen
    /// sees such bytes land in the guest's ring.
    static func hostLeak(_ environment: EnvironmentRecord, into findings: inout [Finding]) {
        alarms(in: environment, into: &findings) { observation in
            guard case let .responseSlot(write) = observation, write.host != 0 else { return nil }
            let offsets = (0..<StackFrame.capacity).filter { write.host & (1 << UInt16($0)) != 0 }
            return (.hostLeak, "no host byte visible to the guest",
                    "bytes \(Wording.byteRuns(offsets)) of response slot \(write.slot) on vbd \(write.vbd) hold "
                        + "the backend's stack (\(Wording.bytes(of: write, at: offsets)))")
        }
    }

    private static func alarms(
        in environment: EnvironmentRecord, into findings: inout [Finding],
        _ alarm: (Observation) -> (check: CheckID, expected: String, seen: String)?
    ) {
        guard environment.hasAlarms else { return }
        for (index, observation) in environment.observations.enumerated() {
            if let found = alarm(observation) {
                findings.append(Finding(found.check, in: .environment(at: index), expected: found.expected, seen: found.seen))
            }
        }
    }
}
