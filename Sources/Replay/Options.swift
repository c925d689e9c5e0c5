import ArgumentParser
import Backend

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json, junit
}

/// Parses `--backend` early so a typo is a usage error, not a failed run.
struct BackendOption: ParsableArguments {
    @Option(name: .long, help: "The backend: seed, fixed, or fixed+QUIRK[+QUIRK…].")
    var backend: String = "fixed"

    func variant() throws -> BackendVariant {
        do { return try BackendVariant(name: backend) } catch { throw ValidationError(error.description) }
    }
}
