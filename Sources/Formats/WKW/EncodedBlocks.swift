import Synchronization

/// Encoded blocks waiting for their file to be written, by file and Morton number: in memory up
/// to a limit, then in an unnamed spill file beside the data.
final class EncodedBlocks: Sendable {
    private struct State {
        var memory: [Vec3: [Int: [UInt8]]] = [:]
        var spilled: [Vec3: [Int: (offset: Int, count: Int)]] = [:]
        var memoryBytes = 0
        var spillEnd = 0
    }
    private let state = Mutex(State())
    private let directory: String
    private let memoryLimit: Int
    private let spill = Mutex<TemporaryFile?>(nil)

    init(directory: String, memoryLimit: Int) {
        self.directory = directory
        self.memoryLimit = memoryLimit
    }

    func put(_ file: Vec3, _ number: Int, _ bytes: [UInt8]) throws {
        let inMemory = state.withLock { s in
            guard s.memoryBytes + bytes.count <= memoryLimit else { return false }
            s.memory[file, default: [:]][number] = bytes
            s.memoryBytes += bytes.count
            return true
        }
        if inMemory { return }
        try spill.withLock { spill in
            if spill == nil { spill = try TemporaryFile(directory: directory) }
            let offset = state.withLock { s in
                defer { s.spillEnd += bytes.count }
                s.spilled[file, default: [:]][number] = (s.spillEnd, bytes.count)
                return s.spillEnd
            }
            try spill!.write(at: offset, bytes)
        }
    }

    /// The encoded blocks of one file (forgotten here).
    func takeFile(_ file: Vec3) throws -> FileBlocks {
        let spillFile = spill.withLock { $0 }
        return state.withLock { s in
            let memory = s.memory.removeValue(forKey: file) ?? [:]
            s.memoryBytes -= memory.values.reduce(0) { $0 + $1.count }
            return FileBlocks(memory: memory, spilled: s.spilled.removeValue(forKey: file) ?? [:], spill: spillFile)
        }
    }

    /// The new encoded blocks of one file, for its writer.
    struct FileBlocks: Sendable {
        let memory: [Int: [UInt8]]
        let spilled: [Int: (offset: Int, count: Int)]
        let spill: TemporaryFile?

        /// Block `n`'s encoded bytes, or nil when the region did not touch it.
        func bytes(_ n: Int) throws -> [UInt8]? {
            if let bytes = memory[n] { return bytes }
            guard let place = spilled[n] else { return nil }
            return try spill!.read(at: place.offset, count: place.count)
        }
    }
}
