/// A progress line for long imports: which pass, how much of the file, how
/// many lines. Reported at most twice a second, through `show` (the command
/// writes it to a terminal's standard error).
public final class ImportProgress {
    private let show: (String) -> Void
    private let clock = ContinuousClock()
    private var last: ContinuousClock.Instant

    public init(show: @escaping (String) -> Void) {
        self.show = show
        last = clock.now
    }

    func update(pass: Int, input: InputLines) {
        let now = clock.now
        guard now - last >= .milliseconds(500) else { return }
        last = now
        let share = input.fileBytes > 0 ? Double(input.bytesConsumed) * 100 / Double(input.fileBytes) : 100
        let what = pass == 1 ? "surveying" : pass == 2 ? "importing" : "comparing"
        show("\(input.path): pass \(pass)/3 (\(what)): \(input.lineNumber) lines, \(Int(share.rounded(.down)))%")
    }
}
