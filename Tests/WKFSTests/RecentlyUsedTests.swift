import Testing
@testable import WKFS

/// The block cache's eviction: the least recently used values leave first, by cost.
@Suite struct RecentlyUsedTests {
    @Test func theLeastRecentlyUsedLeaveFirst() {
        var cache = RecentlyUsed<Int, String>(limit: 30)
        for key in 0..<3 { cache.insert(key, "v\(key)", cost: 10) }
        #expect(cache.cost == 30)
        #expect(cache.find(0) == "v0")  // 0 becomes the most recent: 1 is now the oldest
        cache.insert(3, "v3", cost: 10)
        #expect(!cache.contains(1))
        #expect(cache.contains(0) && cache.contains(2) && cache.contains(3))
        #expect(cache.cost == 30)
        // 2 is now the oldest.
        cache.insert(4, "v4", cost: 10)
        #expect(!cache.contains(2))
        #expect(cache.count == 3)
    }

    @Test func aValueInUseSurvivesAnyNumberOfNewOnes() {
        // A layer of blocks read again at every plane while new layers come in: what a
        // generational scheme dropped with its generation.
        var cache = RecentlyUsed<Int, Int>(limit: 100)
        let kept = Array(0..<5)
        for key in kept { cache.insert(key, key, cost: 10) }
        for key in 100..<1000 {
            cache.insert(key, key, cost: 10)
            for k in kept { #expect(cache.find(k) == k) }
        }
        #expect(cache.cost == 100)
    }

    @Test func replacingAValueCountsItsNewCost() {
        var cache = RecentlyUsed<String, Int>(limit: 100)
        cache.insert("a", 1, cost: 40)
        cache.insert("b", 2, cost: 40)
        cache.insert("a", 3, cost: 70)  // a is the newest: b leaves to make room
        #expect(cache.find("a") == 3)
        #expect(!cache.contains("b"))
        #expect(cache.cost == 70)
    }

    @Test func theNewestStaysEvenAboveTheLimit() {
        var cache = RecentlyUsed<Int, Int>(limit: 10)
        cache.insert(1, 1, cost: 5)
        cache.insert(2, 2, cost: 50)
        #expect(cache.contains(2) && !cache.contains(1))
        #expect(cache.cost == 50)
        cache.insert(3, 3, cost: 5)
        #expect(cache.contains(3) && !cache.contains(2))
        #expect(cache.cost == 5)
    }

    @Test func manyInsertsKeepOnlyTheNewest() {
        var cache = RecentlyUsed<Int, [UInt8]>(limit: 4)
        for key in 0..<10_000 { cache.insert(key, [UInt8(key & 0xff)], cost: 1) }
        #expect(cache.count == 4)
        #expect((9_996..<10_000).allSatisfy { cache.find($0) == [UInt8($0 & 0xff)] })
    }
}
