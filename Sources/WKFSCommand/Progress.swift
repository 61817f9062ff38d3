#if canImport(Glibc)
    import Glibc
#endif

/// A one-line progress counter on stderr, shown only when stderr is a terminal.
struct Progress {
    let label: String
    let enabled = isatty(STDERR_FILENO) == 1
    private var lastPercent = -1

    init(_ label: String) { self.label = label }

    mutating func update(_ done: Int, _ total: Int) {
        guard enabled, total > 0 else { return }
        let percent = done * 100 / total
        guard percent != lastPercent || done == total else { return }
        lastPercent = percent
        printError("\r\(label): \(done)/\(total) files (\(percent)%)", terminator: done == total ? "\n" : "")
    }
}

/// Prints to stderr.
func printError(_ text: String, terminator: String = "\n") {
    let line = text + terminator
    var bytes = Array(line.utf8)
    _ = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}
