import Testing
@testable import SystemCalls

@Suite struct LRUTableTests {
    @Test func evictsTheLeastRecentlyUsedFirst() {
        var t = LRUTable<String, Int>(capacity: 3)
        #expect(t.updateValue(1, forKey: "a") == nil)
        #expect(t.updateValue(2, forKey: "b") == nil)
        #expect(t.updateValue(3, forKey: "c") == nil)
        #expect(t.keysByRecency == ["c", "b", "a"])
        // A read marks "a" used: "b" is now the oldest.
        #expect(t.value(forKey: "a") == 1)
        #expect(t.keysByRecency == ["a", "c", "b"])
        // peek does not change the order.
        #expect(t.peek("b") == 2)
        #expect(t.leastRecent?.key == "b")
        let evicted = t.updateValue(4, forKey: "d")
        #expect(evicted?.key == "b" && evicted?.value == 2)
        #expect(t.count == 3 && t.evictions == 1)
        #expect(t.peek("b") == nil)
        // Updating an existing key never evicts and makes it the newest.
        #expect(t.updateValue(30, forKey: "c") == nil)
        #expect(t.keysByRecency == ["c", "d", "a"])
        #expect(t.removeValue(forKey: "d") == 4)
        #expect(t.keysByRecency == ["c", "a"])
        #expect(t.removeLeastRecent()?.key == "a")
        #expect(t.removeLeastRecent()?.key == "c")
        #expect(t.removeLeastRecent() == nil && t.isEmpty && t.leastRecent == nil)
        // Freed nodes are reused and the order still holds.
        for (i, k) in ["x", "y", "z", "w"].enumerated() { t.updateValue(i, forKey: k) }
        #expect(t.keysByRecency == ["w", "z", "y"])
        #expect(t.evictions == 2)
    }

    @Test func capacityOfOneAndZero() {
        var t = LRUTable<Int, Int>(capacity: 0)
        #expect(t.capacity == 1)
        t.updateValue(1, forKey: 1)
        #expect(t.updateValue(2, forKey: 2)?.key == 1)
        #expect(t.keysByRecency == [2])
    }

    /// The old tables scanned every record (failed logins) or were wiped (LOGIN-DELAY) when
    /// full. Here the work per operation is counted, not timed: the list links rewritten per
    /// insertion into a full table are the same for 10 entries and for 100,000.
    @Test func workPerOperationDoesNotGrowWithTheTable() {
        func stepsPerInsert(capacity: Int) -> Double {
            var t = LRUTable<Int, Int>(capacity: capacity)
            for i in 0..<capacity { t.updateValue(i, forKey: i) }
            let before = t.linkSteps
            let n = 1_000
            for i in capacity..<(capacity + n) {
                t.updateValue(i, forKey: i)
                _ = t.value(forKey: i - 1)
            }
            #expect(t.count == capacity)
            #expect(t.evictions == n)
            return Double(t.linkSteps - before) / Double(n)
        }
        let small = stepsPerInsert(capacity: 10)
        let large = stepsPerInsert(capacity: 100_000)
        #expect(small == large)
        #expect(large <= 4)
        // The evicted ones are exactly the oldest: after 100,000 + 1,000 insertions into a
        // table of 100,000, keys 0..<1,000 are gone and 1,000 is the oldest left.
        var t = LRUTable<Int, Int>(capacity: 100_000)
        for i in 0..<101_000 { t.updateValue(i, forKey: i) }
        #expect(t.peek(999) == nil && t.leastRecent?.key == 1_000)
    }
}
