/// One value per block of a data file, by block number, in pages made on first use.
///
/// A cube writer looks its blocks up several times for every block written, which a dictionary
/// pays in hashing. A flat array would be made and cleared for every commit, and a file of
/// 128³ blocks has two million of them while a write often touches a few: pages of 4,096 blocks
/// (a 16³ group in Morton order; a small file's blocks are one page) cost only where blocks were written.
struct BlockTable<Value> {
    /// Blocks per page: 4,096, or all of a smaller file's blocks (512 in an 8/8 file).
    private let pageShift: Int
    private var pages: [[Value]?]
    private let empty: Value

    /// A table of `count` blocks (a power of two, as in every WKW file), each `empty`.
    init(count: Int, empty: Value) {
        pageShift = min(12, max(0, Int.bitWidth - 1 - count.leadingZeroBitCount))
        pages = Array(repeating: nil, count: (count + (1 << pageShift) - 1) >> pageShift)
        self.empty = empty
    }

    subscript(number: Int) -> Value {
        get { pages[number >> pageShift]?[number & ((1 << pageShift) - 1)] ?? empty }
        // In place: a value's array is mutated without being copied.
        _modify {
            let page = number >> pageShift
            if pages[page] == nil { pages[page] = Array(repeating: empty, count: 1 << pageShift) }
            yield &pages[page]![number & ((1 << pageShift) - 1)]
        }
    }

    /// The numbers of the blocks whose value passes `test`, in increasing order.
    func numbers(where test: (Value) -> Bool) -> [Int] {
        var found: [Int] = []
        for (p, page) in pages.enumerated() {
            guard let page else { continue }
            for (i, value) in page.enumerated() where test(value) { found.append(p << pageShift + i) }
        }
        return found
    }
}

extension BlockTable: Sendable where Value: Sendable {}
