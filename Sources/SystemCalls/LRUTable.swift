/// A dictionary with a fixed capacity that forgets its least recently used entry when full.
///
/// Every operation is O(1): a hash lookup plus a few index updates in a doubly linked list
/// threaded through one array of nodes (freed nodes are reused, so a full table allocates
/// nothing). It replaces tables that were scanned whole (O(n)) or wiped whole when they
/// filled up: the failed-login records (and the LOGIN-DELAY records, which now live in each
/// maildrop's lock file, `Maildrop+LoginDelay.swift`). Here, beside `PThreadLocked`, so that
/// `Auth` (the auth cache, failure penalties) and `Maildrop` (`SizeCacheMemo`) share it.
///
/// "Use" means `updateValue` or `value(forKey:)`; `peek` and `leastRecent` do not change the
/// order. A value type without locks: one thread's, or behind a `PThreadLocked`.
public struct LRUTable<Key: Hashable, Value> {
    struct Node {
        var key: Key?
        var value: Value?
        /// Towards the most recently used end.
        var newer: Int
        /// Towards the least recently used end.
        var older: Int
    }

    /// Entries kept at most (at least 1).
    public let capacity: Int
    private var index: [Key: Int] = [:]
    private var nodes: [Node] = []
    private var free: [Int] = []
    /// Most recently used node, or -1.
    private var newest = -1
    /// Least recently used node, or -1.
    private var oldest = -1
    /// Entries dropped because the table was full (metrics, tests).
    public private(set) var evictions = 0
    /// List links rewritten so far: the unit tests check that it grows with the number of
    /// operations, never with the size of the table.
    private(set) var linkSteps = 0

    /// An empty table holding at most `capacity` entries (at least 1).
    public init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// Entries held now.
    public var count: Int { index.count }
    /// True when no entry is held.
    public var isEmpty: Bool { index.isEmpty }

    /// The value without marking it used.
    public func peek(_ key: Key) -> Value? {
        guard let i = index[key] else { return nil }
        return nodes[i].value
    }

    /// The value, marked as the most recently used.
    public mutating func value(forKey key: Key) -> Value? {
        guard let i = index[key] else { return nil }
        moveToNewest(i)
        return nodes[i].value
    }

    /// Sets the value and marks it the most recently used. When the key is new and the table
    /// is full, the least recently used entry is dropped first and returned.
    @discardableResult
    public mutating func updateValue(_ value: Value, forKey key: Key) -> (key: Key, value: Value)? {
        if let i = index[key] {
            nodes[i].value = value
            moveToNewest(i)
            return nil
        }
        var evicted: (key: Key, value: Value)? = nil
        if index.count >= capacity, let dropped = removeLeastRecent() {
            evicted = dropped
            evictions &+= 1
        }
        let node = Node(key: key, value: value, newer: -1, older: -1)
        let i: Int
        if let reused = free.popLast() {
            nodes[reused] = node
            i = reused
        } else {
            nodes.append(node)
            i = nodes.count - 1
        }
        index[key] = i
        linkAsNewest(i)
        return evicted
    }

    /// Removes `key`'s entry; returns its value, or nil when there was none. O(1).
    @discardableResult
    public mutating func removeValue(forKey key: Key) -> Value? {
        guard let i = index.removeValue(forKey: key) else { return nil }
        return release(i)
    }

    /// The least recently used entry, without changing the order.
    public var leastRecent: (key: Key, value: Value)? {
        guard oldest >= 0, let k = nodes[oldest].key, let v = nodes[oldest].value else { return nil }
        return (k, v)
    }

    /// Drops and returns the least recently used entry.
    @discardableResult
    public mutating func removeLeastRecent() -> (key: Key, value: Value)? {
        guard let (k, _) = leastRecent, let i = index.removeValue(forKey: k), let v = release(i) else { return nil }
        return (k, v)
    }

    /// Keys from the most to the least recently used: O(n), for tests and diagnostics.
    public var keysByRecency: [Key] {
        var keys: [Key] = []
        keys.reserveCapacity(count)
        var i = newest
        while i >= 0 {
            if let k = nodes[i].key { keys.append(k) }
            i = nodes[i].older
        }
        return keys
    }

    // MARK: list plumbing

    private mutating func release(_ i: Int) -> Value? {
        unlink(i)
        let v = nodes[i].value
        nodes[i].key = nil
        nodes[i].value = nil
        free.append(i)
        return v
    }

    private mutating func moveToNewest(_ i: Int) {
        guard i != newest else { return }
        unlink(i)
        linkAsNewest(i)
    }

    private mutating func unlink(_ i: Int) {
        let newer = nodes[i].newer
        let older = nodes[i].older
        if newer >= 0 { nodes[newer].older = older } else { newest = older }
        if older >= 0 { nodes[older].newer = newer } else { oldest = newer }
        nodes[i].newer = -1
        nodes[i].older = -1
        linkSteps &+= 1
    }

    private mutating func linkAsNewest(_ i: Int) {
        nodes[i].older = newest
        nodes[i].newer = -1
        if newest >= 0 { nodes[newest].newer = i }
        newest = i
        if oldest < 0 { oldest = i }
        linkSteps &+= 1
    }
}
