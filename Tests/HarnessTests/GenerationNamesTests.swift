import Backend
import Oracle
import Testing
import Trace

/// Three modules name the generations, each in its own type (the trace
/// format, the backend, the independent oracle): the names must agree, or a
/// `generations` line, a backend and its oracle would speak of different designs.
@Suite struct GenerationNamesTests {
    @Test func theTraceFormatTheBackendAndTheOracleNameTheSameGenerations() {
        let backend = Generation.allCases.map(\.rawValue)
        #expect(TraceFormat.generationNames == backend)
        #expect(OracleGeneration.allCases.map(\.rawValue) == backend)
    }
}
