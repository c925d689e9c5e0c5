/// One picture of an import: three panels over the trace's records, each
/// with the persistent frontend against the legacy one — the persistent
/// grants the backend holds, the share of segments that were persistent
/// hits, and the unmap hypercalls so far. Plain SVG written by hand: the
/// same series always give the same bytes.
public struct GrantPlot {
    public let title: String
    public let persistent: GrantSeries
    public let legacy: GrantSeries

    public init(title: String, persistent: GrantSeries, legacy: GrantSeries) {
        self.title = title
        self.persistent = persistent
        self.legacy = legacy
    }

    static let width = 900.0
    static let left = 90.0
    static let right = 30.0
    static let panelHeight = 180.0
    static let panelGap = 62.0
    static let top = 84.0
    static let colours = (persistent: "#1f77b4", legacy: "#d95f02")

    /// One panel: its name, its y axis, and a value per bucket (nil: no point).
    struct Panel {
        let name: String
        let axisLabel: String
        let maximum: Double
        let percent: Bool
        let value: (GrantSeries.Bucket) -> Double?
    }

    var panels: [Panel] {
        let held = max(peak(\.grantsHeldPeak), 1)
        let unmaps = max(Double(max(persistent.buckets.last?.unmapHypercalls ?? 0, legacy.buckets.last?.unmapHypercalls ?? 0)), 1)
        return [
            Panel(name: "Persistent grants held by the backend (peak \(Int(peak(\.grantsHeldPeak))))", axisLabel: "grants", maximum: held, percent: false,
                  value: { Double($0.grantsHeld) }),
            Panel(name: "Persistent hit rate (segments that needed no map): \(Self.rate(persistent)) persistent, \(Self.rate(legacy)) legacy", axisLabel: "hit rate", maximum: 1, percent: true,
                  value: { $0.hitRate }),
            Panel(name: "Unmap hypercalls so far: \(persistent.buckets.last?.unmapHypercalls ?? 0) persistent, \(legacy.buckets.last?.unmapHypercalls ?? 0) legacy", axisLabel: "hypercalls", maximum: unmaps, percent: false,
                  value: { Double($0.unmapHypercalls) }),
        ]
    }

    /// The hit rate over the whole trace, as a percentage with one decimal.
    static func rate(_ series: GrantSeries) -> String {
        let segments = series.buckets.reduce(0) { $0 + $1.segments }
        let hits = series.buckets.reduce(0) { $0 + $1.hits }
        return segments == 0 ? "-" : number(Double(hits) * 100 / Double(segments)) + "%"
    }

    private func peak(_ key: KeyPath<GrantSeries.Bucket, Int>) -> Double {
        Double((persistent.buckets + legacy.buckets).map { $0[keyPath: key] }.max() ?? 0)
    }

    var records: Int { max(persistent.buckets.last?.lastRecord ?? 0, legacy.buckets.last?.lastRecord ?? 0, 1) }

    public var svg: String {
        let height = Self.top + 3 * Self.panelHeight + 2 * Self.panelGap + 60
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Self.number(Self.width))" height="\(Self.number(height))" \
            viewBox="0 0 \(Self.number(Self.width)) \(Self.number(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">

            """
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(Self.number(Self.width / 2))\" y=\"28\" font-size=\"16\" font-weight=\"bold\" text-anchor=\"middle\">\(Self.escape(title))</text>\n"
        out += legend()
        for (index, panel) in panels.enumerated() {
            let y = Self.top + Double(index) * (Self.panelHeight + Self.panelGap)
            out += draw(panel, top: y, xLabels: true)
        }
        let bottom = Self.top + 3 * Self.panelHeight + 2 * Self.panelGap
        out += "<text x=\"\(Self.number(Self.left + (Self.width - Self.left - Self.right) / 2))\" y=\"\(Self.number(bottom + 44))\" font-size=\"13\" text-anchor=\"middle\">records of the trace, in order (\(records) converted)</text>\n"
        return out + "</svg>\n"
    }

    private func legend() -> String {
        var out = ""
        let y = 52.0
        var x = Self.width / 2 - 235
        for (name, colour) in [("persistent frontend (pool reused)", Self.colours.persistent), ("legacy frontend (grant per segment)", Self.colours.legacy)] {
            out += "<line x1=\"\(Self.number(x))\" y1=\"\(Self.number(y))\" x2=\"\(Self.number(x + 24))\" y2=\"\(Self.number(y))\" stroke=\"\(colour)\" stroke-width=\"3\"/>\n"
            out += "<text x=\"\(Self.number(x + 30))\" y=\"\(Self.number(y + 4))\" font-size=\"12\">\(name)</text>\n"
            x += 250
        }
        return out
    }

    private func draw(_ panel: Panel, top: Double, xLabels: Bool) -> String {
        let plotWidth = Self.width - Self.left - Self.right
        let bottom = top + Self.panelHeight
        var out = "<text x=\"\(Self.number(Self.left))\" y=\"\(Self.number(top - 8))\" font-size=\"13\" font-weight=\"bold\">\(Self.escape(panel.name))</text>\n"
        out += "<rect x=\"\(Self.number(Self.left))\" y=\"\(Self.number(top))\" width=\"\(Self.number(plotWidth))\" height=\"\(Self.number(Self.panelHeight))\" fill=\"none\" stroke=\"#444\"/>\n"
        let yTicks = Self.ticks(upTo: panel.maximum)
        let yTop = yTicks.last ?? panel.maximum
        for tick in yTicks {
            let y = bottom - tick / yTop * Self.panelHeight
            out += "<line x1=\"\(Self.number(Self.left - 5))\" y1=\"\(Self.number(y))\" x2=\"\(Self.number(Self.left + plotWidth))\" y2=\"\(Self.number(y))\" stroke=\"#ddd\"/>\n"
            let label = panel.percent ? "\(Self.number(tick * 100))%" : Self.short(tick)
            out += "<text x=\"\(Self.number(Self.left - 8))\" y=\"\(Self.number(y + 4))\" font-size=\"11\" text-anchor=\"end\">\(label)</text>\n"
        }
        let x0 = Self.left
        for tick in Self.ticks(upTo: Double(records)) {
            let x = x0 + tick / Double(records) * plotWidth
            out += "<line x1=\"\(Self.number(x))\" y1=\"\(Self.number(bottom))\" x2=\"\(Self.number(x))\" y2=\"\(Self.number(bottom + 5))\" stroke=\"#444\"/>\n"
            out += "<text x=\"\(Self.number(x))\" y=\"\(Self.number(bottom + 18))\" font-size=\"11\" text-anchor=\"middle\">\(Self.short(tick))</text>\n"
        }
        let middle = top + Self.panelHeight / 2
        out += "<text x=\"\(Self.number(Self.left - 62))\" y=\"\(Self.number(middle))\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 \(Self.number(Self.left - 62)) \(Self.number(middle)))\">\(panel.axisLabel)</text>\n"
        for (series, colour) in [(legacy, Self.colours.legacy), (persistent, Self.colours.persistent)] {
            var points: [String] = []
            for bucket in series.buckets {
                guard let value = panel.value(bucket) else { continue }
                let x = x0 + Double(bucket.lastRecord) / Double(records) * plotWidth
                let y = bottom - min(value / yTop, 1) * Self.panelHeight
                points.append("\(Self.number(x)),\(Self.number(y))")
            }
            guard !points.isEmpty else { continue }
            out += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"\(points.joined(separator: " "))\"/>\n"
        }
        return out
    }

    /// Round tick values from 0 to at least `maximum`: steps of 1, 2 or 5 times a power of ten, about five of them.
    static func ticks(upTo maximum: Double) -> [Double] {
        let raw = max(maximum, 1e-9) / 5
        var magnitude = 1.0
        while magnitude * 10 <= raw { magnitude *= 10 }
        while magnitude > raw { magnitude /= 10 }
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? magnitude * 10
        var result: [Double] = []
        var value = 0.0
        while value < maximum + step * 0.999 && result.count < 12 {
            result.append(value)
            if value >= maximum { break }
            value += step
        }
        return result
    }

    /// A number with at most one decimal, without a trailing `.0`.
    static func number(_ value: Double) -> String {
        let tenths = (value * 10).rounded()
        let whole = Int(tenths / 10)
        let fraction = Int(abs(tenths).truncatingRemainder(dividingBy: 10))
        let sign = tenths < 0 && whole == 0 ? "-" : ""
        return fraction == 0 ? "\(sign)\(whole)" : "\(sign)\(whole).\(fraction)"
    }

    /// An axis label: 1500 as 1.5k, 2000000 as 2M.
    static func short(_ value: Double) -> String {
        if value >= 1_000_000 { return number(value / 1_000_000) + "M" }
        if value >= 1000 { return number(value / 1000) + "k" }
        return number(value)
    }

    static func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
