import Foundation
import Testing
@testable import Formats

/// Seeded mutation fuzzing of every parser of stored bytes: headers, data files (jump tables and
/// blocks) and undo journals. Each mutated input must be refused with an error or read: never a
/// crash, a hang or an out-of-bounds access. A seed that once crashed stays in `regressions`.
/// `WKFS_FUZZ_ITERATIONS` raises the count (`make fuzz`).
@Suite struct FuzzTests {
    static let iterations = Int(ProcessInfo.processInfo.environment["WKFS_FUZZ_ITERATIONS"] ?? "") ?? 1000

    /// Fixture mag directories whose files are mutated (raw, LZ4, LZ4HC; one and several channels).
    static let mags = ["wkw_lz4_uint8_b8_f2", "wkw_lz4hc_uint64_b8_f1", "wkw_raw_uint16_c2_b4_f4", "wkw_lz4_float32_b16_f1"]

    @Test func mutatedHeadersAreRefusedOrRead() throws {
        var random = SeededRandom(seed: 1)
        for iteration in 0..<Self.iterations {
            let mag = Self.mags[iteration % Self.mags.count]
            let original = try bytes(Fixtures.root + "/" + mag + "/header.wkw")
            let mutated = random.mutate(original)
            if let (header, _) = try? WKWHeader.decode(mutated, path: "fuzz") {
                #expect(header.blockLength >= 1 && header.fileLength >= 1)
            }
        }
    }

    @Test func mutatedDataFilesAreRefusedOrRead() throws {
        var random = SeededRandom(seed: 2)
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for iteration in 0..<Self.iterations {
            let name = Self.mags[iteration % Self.mags.count]
            let source = try MagDirectory.open(Fixtures.root + "/" + name)
            let indices = source.fileIndices()
            let index = indices[random.below(indices.count)]
            let target = directory + "/\(iteration)"
            try FileManager.default.createDirectory(atPath: target + "/z0/y0", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: source.path + "/header.wkw", toPath: target + "/header.wkw")
            let mutated = random.mutate(try bytes(source.filePath(index)))
            FileManager.default.createFile(atPath: target + "/z0/y0/x0.wkw", contents: Data(mutated))
            let mag = try MagDirectory.open(target)
            _ = try? mag.verifyFile(Vec3(0, 0, 0))
            _ = try? mag.read(mag.fileBox(Vec3(0, 0, 0)))
            if let reader = try? DataFileReader.open(mag, Vec3(0, 0, 0)) {
                _ = try? reader.storedBlock(random.below(mag.header.blocksPerFile))
            }
            try FileManager.default.removeItem(atPath: target)
        }
    }

    @Test func mutatedJournalsAreRefusedOrRead() {
        var random = SeededRandom(seed: 3)
        var journal = UndoJournal()
        journal.entries = [
            .init(offset: 4096, bytes: pseudoRandomBytes(700, seed: 4)),
            .init(offset: 32, bytes: pseudoRandomBytes(64, seed: 5)),
        ]
        let original = journal.encoded()
        #expect(UndoJournal.decode(original)?.entries.count == 2)
        var accepted = 0
        for _ in 0..<Self.iterations {
            let mutated = random.mutate(original)
            if let decoded = UndoJournal.decode(mutated) {
                accepted += 1
                #expect(decoded.entries.allSatisfy { $0.offset >= 0 })
            }
        }
        // The checksum refuses nearly every damaged journal (an unchanged one may be drawn).
        #expect(accepted < Self.iterations / 20)
    }

    private func bytes(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

/// A small seeded generator (SplitMix64) and the mutations a fuzzer applies.
struct SeededRandom {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }

    /// One to four mutations: bit flips, bytes set to extreme or random values, a 32- or 64-bit
    /// field set to an extreme value, truncation, extension with random bytes, a duplicated piece.
    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var bytes = input
        for _ in 0...below(4) {
            if bytes.isEmpty { bytes = [0] }
            let at = below(bytes.count)
            switch below(7) {
            case 0: bytes[at] ^= UInt8(1 << below(8))
            case 1: bytes[at] = [0, 0xFF, 0x7F, 0x80][below(4)]
            case 2: bytes[at] = UInt8(truncatingIfNeeded: next())
            case 3:
                let value: UInt64 = [0, UInt64.max, UInt64(Int64.max), UInt64(UInt32.max), 1 << 31, 1 << 40][below(6)]
                let width = below(2) == 0 ? 4 : 8
                for k in 0..<width where at + k < bytes.count { bytes[at + k] = UInt8(truncatingIfNeeded: value >> (8 * k)) }
            case 4: bytes.removeSubrange(at...)
            case 5: bytes += (0..<(1 + below(64))).map { _ in UInt8(truncatingIfNeeded: next()) }
            default:
                let end = min(bytes.count, at + 1 + below(32))
                bytes.insert(contentsOf: bytes[at..<end], at: below(bytes.count))
            }
        }
        return bytes
    }
}

/// The journal format: older versions still read, new fields round-trip.
@Suite struct UndoJournalTests {
    /// A journal a build before holes and write ids wrote (version 1) is still rolled back.
    @Test func versionOneStillReads() {
        var bytes = Array("WKFSUNDO".utf8)
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
        put(UInt32(1))
        put(UInt32(1))
        put(UInt64(16))
        put(UInt64(3))
        bytes += [7, 8, 9]
        put(Checksum.fnv1a(bytes))
        let journal = UndoJournal.decode(bytes)
        #expect(journal?.entries.count == 1)
        #expect(journal?.entries.first?.bytes == [7, 8, 9])
        #expect(journal?.entries.first?.offset == 16)
    }

    @Test func holesAndWriteIDsRoundTrip() {
        var journal = UndoJournal()
        journal.writeID = 0xABCD
        journal.entries = [.init(offset: 16, bytes: [1, 2]), .init(offset: 4096, holeOf: 1 << 20)]
        let decoded = UndoJournal.decode(journal.encoded())
        #expect(decoded?.writeID == 0xABCD)
        #expect(decoded?.entries.map(\.length) == [2, 1 << 20])
        #expect(decoded?.entries.map(\.isHole) == [false, true])
    }
}
