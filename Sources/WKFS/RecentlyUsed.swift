/// Values by key, bounded by the sum of their costs: past the bound, the least recently used
/// values leave first. Every step is O(1): a dictionary of slots, and the slots in a doubly
/// linked list by recency (indices into one array, reused when freed).
///
/// What stays is exactly what was used most recently: a value used again before `limit` of other
/// values came in is never dropped (a generational scheme dropped whole generations, values
/// still in use among them).
struct RecentlyUsed<Key: Hashable, Value> {
    private struct Slot {
        var key: Key
        var value: Value?
        var cost: Int
        var newer = -1
        var older = -1
    }

    let limit: Int
    private(set) var cost = 0
    private var slots: [Slot] = []
    private var freeSlots: [Int] = []
    private var index: [Key: Int] = [:]
    private var newest = -1
    private var oldest = -1

    init(limit: Int) { self.limit = limit }

    var count: Int { index.count }

    func contains(_ key: Key) -> Bool { index[key] != nil }

    /// The value of `key`, which becomes the most recently used.
    mutating func find(_ key: Key) -> Value? {
        guard let i = index[key] else { return nil }
        unlink(i)
        linkNewest(i)
        return slots[i].value
    }

    /// Stores `value` as the most recently used, then drops the least recently used values while
    /// the costs pass the limit (never the one just stored).
    mutating func insert(_ key: Key, _ value: Value, cost: Int) {
        if let i = index[key] {
            self.cost += cost - slots[i].cost
            slots[i].value = value
            slots[i].cost = cost
            unlink(i)
            linkNewest(i)
        } else {
            let slot = Slot(key: key, value: value, cost: cost)
            let i: Int
            if let free = freeSlots.popLast() {
                slots[free] = slot
                i = free
            } else {
                slots.append(slot)
                i = slots.count - 1
            }
            index[key] = i
            self.cost += cost
            linkNewest(i)
        }
        while self.cost > limit && oldest != newest { remove(oldest) }
    }

    private mutating func remove(_ i: Int) {
        unlink(i)
        index[slots[i].key] = nil
        cost -= slots[i].cost
        slots[i].value = nil  // the value's memory goes now, not when the slot is reused
        freeSlots.append(i)
    }

    private mutating func unlink(_ i: Int) {
        let (newer, older) = (slots[i].newer, slots[i].older)
        if newer >= 0 { slots[newer].older = older } else { newest = older }
        if older >= 0 { slots[older].newer = newer } else { oldest = newer }
        slots[i].newer = -1
        slots[i].older = -1
    }

    private mutating func linkNewest(_ i: Int) {
        slots[i].older = newest
        if newest >= 0 { slots[newest].newer = i }
        newest = i
        if oldest < 0 { oldest = i }
    }
}
