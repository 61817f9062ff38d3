import Foundation
import Testing
import Formats
import WebKnossos

enum SharedFixtures {
    static let root: String = {
        if let path = ProcessInfo.processInfo.environment["WKFS_FIXTURES"] { return path }
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // -> repo
        return url.appendingPathComponent("Tests/fixtures").path
    }()

    /// Fixture datasets (directories with a properties file).
    static var datasets: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted().filter {
            FileManager.default.fileExists(atPath: root + "/" + $0 + "/datasource-properties.json")
        }
    }
}

func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "webknossos-tests-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct PropertiesTests {
    @Test func everyFixtureParses() throws {
        #expect(SharedFixtures.datasets.count >= 11)
        for name in SharedFixtures.datasets {
            let ds = try Dataset.open(SharedFixtures.root + "/" + name)
            #expect(!ds.layers.isEmpty, "\(name)")
            for layer in ds.layers { #expect(layer.declaredVoxelType != nil, "\(name)/\(layer.name)") }
        }
    }

    /// What webknossos 4.x wrote comes back byte for byte; older schemas keep their meaning.
    @Test func rewritesAreFaithful() throws {
        for name in SharedFixtures.datasets {
            let file = SharedFixtures.root + "/" + name + "/datasource-properties.json"
            let original = try Data(contentsOf: URL(fileURLWithPath: file))
            let properties = try DatasetProperties.decode(original, file: file)
            let rewritten = properties.encoded()
            #expect(try JSONValue.parse(rewritten) == JSONValue.parse(original), "\(name)")
            if name.hasPrefix("wk433") { #expect(rewritten == original, "\(name)") }
        }
    }

    @Test func unknownFieldsSurvive() throws {
        let text = """
            {"id": {"name": "x", "team": "", "owner": 7}, "scale": [1, 2, 3.5], "future": {"a": [1, 2]},
             "dataLayers": [{"name": "c", "category": "color", "elementClass": "uint24", "num_channels": 3,
               "boundingBox": {"topLeft": [-1, -1, -1], "width": 0, "height": 0, "depth": 0},
               "wkwResolutions": [{"resolution": 2, "cubeLength": 1024}], "dataFormat": "wkw",
               "defaultViewConfiguration": {"color": [255, 0, 0]}}]}
            """
        let properties = try DatasetProperties.decode(Data(text.utf8), file: "p.json")
        #expect(properties.layers[0].declaredVoxelType == .uint8)
        #expect(properties.layers[0].mags[0].mag == Mag(2, 2, 2))
        let again = try JSONValue.parse(properties.encoded())
        #expect(again == (try JSONValue.parse(Data(text.utf8))))
    }

    @Test(arguments: [
        ("{", "not valid JSON"),
        ("[]", "top level"),
        (#"{"scale": [1,1,1], "dataLayers": []}"#, "'id'"),
        (#"{"id": {}, "scale": [1,1], "dataLayers": []}"#, "'scale'"),
        (#"{"id": {}, "scale": [1,1,1], "dataLayers": [{"name": "../x", "category": "color", "elementClass": "uint8", "boundingBox": {"topLeft": [0,0,0], "width": 1, "height": 1, "depth": 1}}]}"#, "leave the dataset"),
        (#"{"id": {}, "scale": [1,1,1], "dataLayers": [{"name": "a", "category": "colour", "elementClass": "uint8", "boundingBox": {"topLeft": [0,0,0], "width": 1, "height": 1, "depth": 1}}]}"#, "category"),
        (#"{"id": {}, "scale": [1,1,1], "dataLayers": [{"name": "a", "category": "color", "elementClass": "uint7", "boundingBox": {"topLeft": [0,0,0], "width": 1, "height": 1, "depth": 1}}]}"#, "elementClass"),
        (#"{"id": {}, "scale": [1,1,1], "dataLayers": [{"name": "a", "category": "color", "elementClass": "uint8", "boundingBox": {"topLeft": [0,0], "width": 1, "height": 1, "depth": 1}}]}"#, "boundingBox"),
    ])
    func invalidPropertiesNameTheFieldAndFile(text: String, words: String) {
        #expect {
            try DatasetProperties.decode(Data(text.utf8), file: "/d/datasource-properties.json")
        } throws: { error in
            "\(error)".contains("/d/datasource-properties.json") && "\(error)".contains(words)
        }
    }

    @Test func elementClassNames() {
        #expect(ElementClass.name(.uint8, channels: 3) == "uint24")
        #expect(ElementClass.name(.float32, channels: 1) == "float")
        #expect(ElementClass.name(.float32, channels: 2) == "double")
        #expect(ElementClass.voxelType("double", channels: 2) == .float32)
        #expect(ElementClass.voxelType("uint32", channels: 2) == .uint16)
        #expect(ElementClass.voxelType("int16", channels: 1) == .int16)
    }
}

@Suite struct DatasetTests {
    @Test func seedStepsWithTheLibrary() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var ds = try Dataset.create(root + "/my_new_dataset", voxelSize: [1, 1, 1])
        try ds.addLayer("color", category: .color, voxelType: .uint8, channels: 3)
        try ds.addMag("color", "1", blockLength: 8, fileLength: 4)
        try ds.addMag("color", "2", blockLength: 8, fileLength: 4, compress: true)
        let a = (0..<(3 * 40 * 30 * 10)).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let boxA = Box(offset: Vec3(10, 20, 30), size: Vec3(40, 30, 10))
        try a.withUnsafeBytes { try ds.write("color", mag: "1", box: boxA, bytes: $0) }
        let b = (0..<(3 * 20 * 15 * 5)).map { UInt8(truncatingIfNeeded: $0 * 13) }
        let boxB = Box(offset: Vec3(5, 10, 15), size: Vec3(20, 15, 5))
        try b.withUnsafeBytes { try ds.write("color", mag: "2", box: boxB, bytes: $0) }
        #expect(try ds.layer("color").boundingBox == boxA)
        #expect(try ds.mag("color", "1").read(boxA) == a)
        #expect(try ds.mag("color", "2").read(boxB) == b)
        #expect(try ds.mag("color", "2").defaultBox == boxB)
        #expect(throws: DatasetError.self) { try ds.addMag("color", "1") }
        #expect(throws: DatasetError.self) { try ds.addLayer("color", category: .color, voxelType: .uint8) }

        let copy = try ds.copy(to: root + "/copy_of_dataset", options: .init(blockLength: 8, fileLength: 8, compress: true))
        #expect(try copy.mag("color", "1").store.compressionName == "LZ4HC")
        #expect(try copy.mag("color", "1").store.fileShape == Vec3(repeating: 64))
        #expect(try copy.mag("color", "1").read(boxA) == a)
        #expect(try copy.mag("color", "2").read(boxB) == b)
        #expect(copy.check().isEmpty)

        try ds.addLayer("segmentation", category: .segmentation, voxelType: .uint8, largestSegmentId: 0)
        var linked = try Dataset.open(root + "/copy_of_dataset")
        try linked.addSymlinkLayer(target: ds.layerPath("segmentation"))
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: linked.layerPath("segmentation"))
        #expect(link == "../my_new_dataset/segmentation")
        #expect(try Dataset.open(root + "/copy_of_dataset").layer("segmentation").category == .segmentation)
    }

    @Test func magNames() throws {
        #expect(try Mag(parsing: "2").shortName == "2")
        #expect(try Mag(parsing: "2-2-1").shortName == "2-2-1")
        #expect(try Mag(parsing: "1-1-1").shortName == "1")
        #expect(throws: DatasetError.self) { try Mag(parsing: "3") }
        #expect(throws: DatasetError.self) { try Mag(parsing: "2-2") }
        #expect(Mag(2, 2, 1).fromMag1(Box(offset: Vec3(5, 5, 5), size: Vec3(10, 10, 10))) == Box(offset: Vec3(2, 2, 5), size: Vec3(6, 6, 10)))
    }
}
