import Foundation
import Testing
import Formats

/// The reference-written fixtures in the repository (`Tests/fixtures`, or `$WKFS_FIXTURES`).
enum Fixtures {
    static let root: String = {
        if let path = ProcessInfo.processInfo.environment["WKFS_FIXTURES"] { return path }
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // Tests/WKWTests/FixtureTests.swift -> repo
        return url.appendingPathComponent("Tests/fixtures").path
    }()

    /// Every region of every manifest: (mag directory, region JSON).
    static func regions() -> [(name: String, magDirectory: String, region: [String: Any])] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        var result: [(String, String, [String: Any])] = []
        for file in names.sorted() where file.hasSuffix(".manifest.json") {
            let dataset = String(file.dropLast(".manifest.json".count))
            let data = try! Data(contentsOf: URL(fileURLWithPath: root + "/" + file))
            let manifest = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
            if let regions = manifest["regions"] as? [[String: Any]] {
                for r in regions { result.append(("\(dataset):\(r["name"]!)", root + "/" + dataset, r)) }
            }
            for layer in manifest["layers"] as? [[String: Any]] ?? [] {
                for mag in layer["mags"] as? [[String: Any]] ?? [] {
                    for r in mag["regions"] as? [[String: Any]] ?? [] {
                        let dir = root + "/" + dataset + "/" + (mag["mag_dir"] as! String)
                        result.append(("\(dataset)/\(mag["mag_dir"]!):\(r["name"]!)", dir, r))
                    }
                }
            }
        }
        return result
    }
}

@Suite struct FixtureTests {
    @Test func fixturesArePresent() {
        #expect(Fixtures.regions().count > 50, "fixtures not found at \(Fixtures.root)")
    }

    /// Every sample voxel of every manifest region reads as the reference read it.
    @Test func samplesMatchTheReference() throws {
        for (name, directory, region) in Fixtures.regions() {
            // Each fixture mag in its own format, through the format-neutral store.
            let mag: any MagStore =
                FileManager.default.fileExists(atPath: directory + "/zarr.json") ? try Zarr3Array.open(directory) : try MagDirectory.open(directory)
            let offset = region["offset_mag"] as! [Int]
            let size = region["size_mag"] as! [Int]
            let box = Box(offset: Vec3(offset[0], offset[1], offset[2]), size: Vec3(size[0], size[1], size[2]))
            let bytes = try mag.read(box)
            #expect(bytes.count == region["num_bytes"] as! Int, "\(name)")
            for sample in region["samples"] as! [[String: Any]] {
                let xyz = sample["xyz"] as! [Int]
                let p = Vec3(xyz[0], xyz[1], xyz[2]) - box.offset
                let index = ((p.z * box.size.y + p.y) * box.size.x + p.x) * mag.voxelBytes
                let voxel = Array(bytes[index..<(index + mag.voxelBytes)])
                let values = (sample["values"] as! [NSNumber])
                let expected = values.flatMap { Self.littleEndian($0, mag.voxelType) }
                #expect(voxel == expected, "\(name) at \(xyz)")
            }
        }
    }

    static func littleEndian(_ n: NSNumber, _ type: VoxelType) -> [UInt8] {
        func bytes<T>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
        switch type {
        case .uint8: return bytes(n.uint8Value)
        case .uint16: return bytes(n.uint16Value.littleEndian)
        case .uint32: return bytes(n.uint32Value.littleEndian)
        case .uint64: return bytes(n.uint64Value.littleEndian)
        case .int8: return bytes(n.int8Value)
        case .int16: return bytes(n.int16Value.littleEndian)
        case .int32: return bytes(n.int32Value.littleEndian)
        case .int64: return bytes(n.int64Value.littleEndian)
        case .float32: return bytes(n.floatValue.bitPattern.littleEndian)
        case .float64: return bytes(n.doubleValue.bitPattern.littleEndian)
        }
    }
}
