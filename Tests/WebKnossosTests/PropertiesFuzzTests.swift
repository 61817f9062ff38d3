import Foundation
import Testing
import WebKnossos

/// Seeded mutation fuzzing of the properties parser: every mutated `datasource-properties.json`
/// of the fixtures is refused with a `DatasetError` or read; never a crash.
/// `WKFS_FUZZ_ITERATIONS` raises the count (`make fuzz`).
@Suite struct PropertiesFuzzTests {
    static let iterations = Int(ProcessInfo.processInfo.environment["WKFS_FUZZ_ITERATIONS"] ?? "") ?? 1000

    @Test func mutatedPropertiesAreRefusedOrRead() throws {
        let texts = try SharedFixtures.datasets.map {
            Array(try Data(contentsOf: URL(fileURLWithPath: SharedFixtures.root + "/" + $0 + "/datasource-properties.json")))
        }
        #expect(texts.count >= 11)
        // JSON's own characters are the interesting replacements for a JSON parser.
        let tokens: [[UInt8]] = ["{", "}", "[", "]", ",", ":", "\"", "-", "1e400", "null", "true", "-1", "18446744073709551616", "\\u0000", "0.5"].map { Array($0.utf8) }
        var state: UInt64 = 42
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        var accepted = 0
        for iteration in 0..<Self.iterations {
            var bytes = texts[iteration % texts.count]
            for _ in 0...(next() % 3) {
                let at = next() % max(1, bytes.count)
                switch next() % 4 {
                case 0: bytes.replaceSubrange(at..<min(bytes.count, at + 1 + next() % 8), with: tokens[next() % tokens.count])
                case 1: bytes.removeSubrange(at..<min(bytes.count, at + 1 + next() % 64))
                case 2: bytes.insert(contentsOf: tokens[next() % tokens.count], at: at)
                default: if at < bytes.count { bytes[at] = UInt8(truncatingIfNeeded: next()) }
                }
            }
            do {
                let properties = try DatasetProperties.decode(Data(bytes), file: "fuzz.json")
                accepted += 1
                _ = properties.encoded()
            } catch is DatasetError {
            }
        }
        #expect(accepted < Self.iterations)
    }
}
