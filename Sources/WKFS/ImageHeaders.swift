import Foundation
import Formats

/// A NRRD detached header (`.nhdr`) for a raw file of (z, y, x, c) C-order little-endian voxels:
/// what 3D Slicer, ITK, pynrrd and Fiji need to read it with its geometry.
struct NRRDHeader {
    var voxelType: VoxelType
    var channels: Int
    /// Voxels along x, y, z.
    var size: Vec3
    /// Physical size of one voxel (voxel size × mag), and of the first voxel's corner.
    var spacing: [Double]
    var origin: [Double]
    var unit: String
    var dataFile: String
    var comment: String

    var text: String {
        let type: String = switch voxelType {
        case .uint8: "uint8"
        case .uint16: "uint16"
        case .uint32: "uint32"
        case .uint64: "uint64"
        case .int8: "int8"
        case .int16: "int16"
        case .int32: "int32"
        case .int64: "int64"
        case .float32: "float"
        case .float64: "double"
        }
        func number(_ d: Double) -> String { JSONValue.format(d) }
        let directions = (0..<3).map { axis in
            "(" + (0..<3).map { $0 == axis ? number(spacing[axis]) : "0" }.joined(separator: ",") + ")"
        }
        let multi = channels > 1
        var lines = ["NRRD0004", "# \(comment)", "type: \(type)", "dimension: \(multi ? 4 : 3)", "space dimension: 3"]
        lines.append("sizes: " + (multi ? ["\(channels)"] : []).joined() + (multi ? " " : "") + "\(size.x) \(size.y) \(size.z)")
        lines.append("space directions: " + (multi ? "none " : "") + directions.joined(separator: " "))
        lines.append("kinds: " + (multi ? "vector " : "") + "domain domain domain")
        lines.append("space origin: (" + origin.map(number).joined(separator: ",") + ")")
        lines.append("space units: " + Array(repeating: "\"\(Self.shortUnit(unit))\"", count: 3).joined(separator: " "))
        lines += ["endian: little", "encoding: raw", "data file: \(dataFile)"]
        return lines.joined(separator: "\n") + "\n"
    }

    /// `nanometer` -> `nm` (the spelling viewers show); other units as written.
    static func shortUnit(_ unit: String) -> String {
        ["nanometer": "nm", "micrometer": "um", "millimeter": "mm", "meter": "m", "picometer": "pm", "angstrom": "A"][unit] ?? unit
    }
}

/// An uncompressed baseline TIFF of one z plane: a header and one IFD (with the pixel size in
/// the resolution tags and ImageJ's `unit`/`spacing` in the description, for Fiji), then the
/// plane's pixels as one strip, rows of (x, c) as the plane lies in a volume. Its size is known
/// without reading any voxel.
struct TIFFPlane {
    var width: Int
    var height: Int
    var voxelType: VoxelType
    var channels: Int
    /// Physical pixel size along x and y, and the z spacing, in `unit`.
    var pixelSize: (x: Double, y: Double, z: Double)
    var unit: String

    var pixelBytes: Int { width * height * channels * voxelType.size }

    /// The bytes before the pixels, and so the pixels' offset.
    var header: [UInt8] {
        let spp = channels
        let bits = UInt16(voxelType.size * 8)
        let format: UInt16 = voxelType.isFloat ? 3 : (voxelType.isSigned ? 2 : 1)
        let description = "ImageJ=1.11a\nunit=\(NRRDHeader.shortUnit(unit))\nspacing=\(JSONValue.format(pixelSize.z))\n\0"
        // Entries: (tag, type, count, value or out-of-line bytes). Types: 2 ASCII, 3 SHORT, 4 LONG, 5 RATIONAL.
        var entries: [(tag: UInt16, type: UInt16, count: UInt32, inline: UInt32?, data: [UInt8])] = []
        func shorts(_ values: [UInt16]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } } }
        func rational(_ perUnit: Double) -> [UInt8] {
            // Pixels per unit as a fraction of 32-bit integers.
            let denominator: UInt32 = 1_000_000
            let numerator = UInt32(max(1, min(Double(UInt32.max), (perUnit * Double(denominator)).rounded())))
            return [numerator, denominator].flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } }
        }
        entries.append((256, 4, 1, UInt32(width), []))
        entries.append((257, 4, 1, UInt32(height), []))
        entries.append(spp <= 2 ? (258, 3, UInt32(spp), UInt32(bits) | (spp == 2 ? UInt32(bits) << 16 : 0), []) : (258, 3, UInt32(spp), nil, shorts(Array(repeating: bits, count: spp))))
        entries.append((259, 3, 1, 1, []))
        entries.append((262, 3, 1, spp == 3 && voxelType == .uint8 ? 2 : 1, []))
        entries.append((270, 2, UInt32(description.utf8.count), nil, Array(description.utf8)))
        entries.append((273, 4, 1, 0, []))  // strip offset: set below
        entries.append((277, 3, 1, UInt32(spp), []))
        entries.append((278, 4, 1, UInt32(height), []))
        entries.append((279, 4, 1, UInt32(pixelBytes), []))
        entries.append((282, 5, 1, nil, rational(1 / pixelSize.x)))
        entries.append((283, 5, 1, nil, rational(1 / pixelSize.y)))
        entries.append((284, 3, 1, 1, []))
        entries.append((296, 3, 1, 1, []))  // no absolute unit: ImageJ takes `unit` from the description
        let extra = spp == 3 && voxelType == .uint8 ? 0 : spp - 1
        if extra > 0 {
            entries.append(extra <= 2 ? (338, 3, UInt32(extra), 0, []) : (338, 3, UInt32(extra), nil, shorts(Array(repeating: 0, count: extra))))
        }
        entries.append(spp <= 2 ? (339, 3, UInt32(spp), UInt32(format) | (spp == 2 ? UInt32(format) << 16 : 0), []) : (339, 3, UInt32(spp), nil, shorts(Array(repeating: format, count: spp))))

        let ifdSize = 2 + entries.count * 12 + 4
        var outOfLine = 8 + ifdSize
        var blob: [UInt8] = []
        var ifd: [UInt8] = []
        func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
            withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
        }
        append(UInt16(entries.count), to: &ifd)
        var stripEntry = 0
        for (i, entry) in entries.enumerated() {
            append(entry.tag, to: &ifd)
            append(entry.type, to: &ifd)
            append(entry.count, to: &ifd)
            if entry.tag == 273 { stripEntry = i }
            if let inline = entry.inline {
                append(inline, to: &ifd)
            } else {
                append(UInt32(outOfLine + blob.count), to: &ifd)
                blob += entry.data
                if blob.count % 2 == 1 { blob.append(0) }  // values start on word boundaries
            }
        }
        append(UInt32(0), to: &ifd)  // no next IFD
        var bytes: [UInt8] = Array("II".utf8)
        append(UInt16(42), to: &bytes)
        append(UInt32(8), to: &bytes)
        bytes += ifd + blob
        while bytes.count % 16 != 0 { bytes.append(0) }  // pixels aligned
        outOfLine = bytes.count
        // The strip offset: the pixels follow the header.
        let at = 8 + 2 + stripEntry * 12 + 8
        withUnsafeBytes(of: UInt32(outOfLine).littleEndian) { for (k, b) in $0.enumerated() { bytes[at + k] = b } }
        return bytes
    }
}
