#if canImport(Glibc)
    import Glibc
#endif
import Foundation

/// Progress of a long job on stderr: on a terminal a bar with the rate and the time left,
/// redrawn in place; otherwise (a log file, a SLURM job's output) one line per percent.
struct Progress {
    let label: String
    let unit: String
    let isTerminal = isatty(STDERR_FILENO) == 1
    private var lastPercent = -1
    private let started = Date()

    init(_ label: String, unit: String = "files") {
        self.label = label
        self.unit = unit
    }

    mutating func update(_ done: Int, _ total: Int) {
        guard total > 0 else { return }
        let percent = done * 100 / total
        guard percent != lastPercent || done == total else { return }
        lastPercent = percent
        let elapsed = Date().timeIntervalSince(started)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let left = rate > 0 ? Double(total - done) / rate : 0
        let numbers = "\(percent)% \(done)/\(total) \(unit), \(Self.format(rate)) \(unit)/s, \(Self.clock(left)) left"
        if isTerminal {
            let width = 24
            let filled = done * width / total
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            printError("\r\(label) [\(bar)] \(numbers)\u{1B}[K", terminator: done == total ? "\n" : "")
        } else {
            printError("\(label): \(numbers)")
        }
    }

    static func format(_ rate: Double) -> String {
        rate >= 10 ? String(Int(rate.rounded())) : String(format: "%.1f", rate)
    }

    /// Seconds as `m:ss` or `h:mm:ss`.
    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

/// Prints to stderr.
func printError(_ text: String, terminator: String = "\n") {
    let line = text + terminator
    var bytes = Array(line.utf8)
    _ = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}
