/// Morton (Z-order) numbering of the blocks inside one file:
/// bit k of x goes to bit 3k, of y to bit 3k+1, of z to bit 3k+2.
public enum Morton {
    /// The block index of block position `p` inside a file.
    @inlinable
    public static func encode(_ p: Vec3) -> Int {
        if p.x < 128 && p.y < 128 && p.z < 128 && p.x >= 0 && p.y >= 0 && p.z >= 0 {
            return spreadTable[p.x] | spreadTable[p.y] << 1 | spreadTable[p.z] << 2
        }
        return spread(p.x) | spread(p.y) << 1 | spread(p.z) << 2
    }

    /// `spread` of 0..<128, the largest block coordinate inside a file.
    @usableFromInline
    static let spreadTable: [Int] = (0..<128).map(spread)

    /// The block position inside a file of block index `index`.
    @inlinable
    public static func decode(_ index: Int) -> Vec3 {
        Vec3(compact(index), compact(index >> 1), compact(index >> 2))
    }

    @usableFromInline
    static func spread(_ v: Int) -> Int {
        var result = 0
        for bit in 0..<21 where v & (1 << bit) != 0 { result |= 1 << (3 * bit) }
        return result
    }

    @usableFromInline
    static func compact(_ v: Int) -> Int {
        var result = 0
        for bit in 0..<21 where v & (1 << (3 * bit)) != 0 { result |= 1 << bit }
        return result
    }
}
