/// Where each block of one existing data file lies, checked against the mag's header.
struct DataFileLayout: Sendable {
    let path: String
    let header: WKWHeader
    let fileSize: Int
    let dataOffset: Int
    /// The jump table of a compressed file: the end offset of each block. Empty for raw files.
    let blockEnds: [Int]

    /// Reads and checks the header and jump table of an open data file.
    /// - Throws: `FormatError.corrupt` naming the file when it disagrees with `magHeader`,
    ///   is truncated, or has a broken jump table.
    static func read(_ file: OpenFile, magHeader: WKWHeader) throws -> DataFileLayout {
        let path = file.path
        let fileSize = try file.size()
        let (header, dataOffset) = try WKWHeader.decode(
            try file.read(at: 0, count: min(fileSize, WKWHeader.byteCount)), path: path)
        guard header == magHeader else {
            throw FormatError(
                .corrupt, path: path,
                "header disagrees with header.wkw (block length \(header.blockLength)/\(magHeader.blockLength), file length \(header.fileLength)/\(magHeader.fileLength), block type \(header.blockType)/\(magHeader.blockType), voxel type \(header.voxelType)/\(magHeader.voxelType), channels \(header.channels)/\(magHeader.channels))"
            )
        }
        guard dataOffset == header.dataFileDataOffset else {
            throw FormatError(.corrupt, path: path, "data offset is \(dataOffset), expected \(header.dataFileDataOffset)")
        }
        if !header.blockType.isCompressed {
            guard fileSize >= header.rawFileLength else {
                throw FormatError(
                    .corrupt, path: path,
                    "raw file is truncated: \(fileSize) bytes, expected \(header.rawFileLength)")
            }
            return DataFileLayout(path: path, header: header, fileSize: fileSize, dataOffset: dataOffset, blockEnds: [])
        }
        let count = header.blocksPerFile
        guard fileSize >= dataOffset else {
            throw FormatError(
                .corrupt, path: path, "file is truncated: \(fileSize) bytes, the jump table ends at \(dataOffset)")
        }
        let table = try file.read(at: WKWHeader.byteCount, count: 8 * count)
        var ends = [Int](repeating: 0, count: count)
        var previous = dataOffset
        for n in 0..<count {
            var value: UInt64 = 0
            for i in (0..<8).reversed() { value = value << 8 | UInt64(table[8 * n + i]) }
            guard value >= UInt64(previous), value <= UInt64(fileSize) else {
                let why =
                    value > UInt64(fileSize)
                    ? "points past the end of the file (\(fileSize) bytes): file is truncated or the table is broken"
                    : "is smaller than the previous end \(previous): the jump table is broken"
                throw FormatError(.corrupt, path: path, "jump table entry \(n) (\(value)) \(why)")
            }
            ends[n] = Int(value)
            previous = Int(value)
        }
        guard previous == fileSize else {
            throw FormatError(
                .corrupt, path: path, "file is \(fileSize) bytes but its jump table ends at \(previous)")
        }
        return DataFileLayout(path: path, header: header, fileSize: fileSize, dataOffset: dataOffset, blockEnds: ends)
    }

    /// The byte range of block `n` (in Morton order) in the file.
    func range(ofBlock n: Int) -> Range<Int> {
        if blockEnds.isEmpty {
            let start = dataOffset + n * header.blockByteCount
            return start..<(start + header.blockByteCount)
        }
        return (n == 0 ? dataOffset : blockEnds[n - 1])..<blockEnds[n]
    }

    /// The stored byte ranges of `blocks`, merged into runs that one read each can fetch: blocks
    /// that lie together (or less than `maxGap` bytes apart) share a run of at most `maxLength`
    /// bytes (unless one block alone is longer).
    func runs(_ blocks: [Int], maxGap: Int = 64 << 10, maxLength: Int = .max) -> [(range: Range<Int>, blocks: [Int])] {
        let sorted = blocks.map { ($0, range(ofBlock: $0)) }.sorted { $0.1.lowerBound < $1.1.lowerBound }
        var result: [(range: Range<Int>, blocks: [Int])] = []
        for (block, range) in sorted {
            if let last = result.last, range.lowerBound <= last.range.upperBound + maxGap,
                range.upperBound - last.range.lowerBound <= maxLength
            {
                result[result.count - 1].range = last.range.lowerBound..<max(last.range.upperBound, range.upperBound)
                result[result.count - 1].blocks.append(block)
            } else {
                result.append((range, [block]))
            }
        }
        return result
    }

    /// Decodes block `n` from its stored bytes into `destination` (one decoded block).
    /// - Throws: `FormatError.corrupt` when the bytes are not LZ4 data of exactly one block.
    func decode(block n: Int, stored: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws {
        if !header.blockType.isCompressed {
            destination.copyMemory(from: stored)
            return
        }
        guard LZ4Block.decompress(stored, into: destination) else {
            throw FormatError(
                .corrupt, path: path,
                "block \(n) at offset \(range(ofBlock: n).lowerBound) (\(stored.count) bytes) is not valid LZ4 data of \(destination.count) bytes")
        }
    }
}
