import Glibc
import SystemCalls

/// The size caches this process parsed or wrote, kept in memory by maildrop (issue 17): a
/// login whose `pop3d.sizes` is still the file parsed (`loadRemembered`) or written
/// (`saveRemembered`) before takes its entries from here after one `fstatat`, instead of
/// opening, reading and parsing the file again (`openat`, `fstat`,
/// `read`, `close` and ~20k instructions for a maildrop of ten messages). The minimal C
/// responder of `Benchmarks/` keeps every size in memory for the life of the process; this is
/// that, bounded and checked.
///
/// "Still the file": same device, inode, size, mtime and ctime as the file the entries were
/// parsed from (`Identity`). pop3d replaces the file by a rename (a new inode); any other
/// write changes its ctime. The entries themselves are never trusted over a message either:
/// the listing compares each entry's file size and mtime with the message's `stat`, as it does
/// for a cache read from disk.
///
/// Keyed by the Maildir root's device and inode (not its path: a root moved or replaced is
/// another key) and by the wire-size rule the sizes were counted under. Bounded by
/// `memoByteBudget` octets in all (the files' octets plus a row per entry) and
/// `memoMaxCacheBytes` for one maildrop: the least recently used maildrops are dropped first
/// (`LRUTable`). Shared by the loop and the storage workers behind a
/// pthread mutex (`PThreadLocked`, ARCHITECTURE.md convention 11); the critical sections are a
/// hash lookup or insert, and caches dropped are freed after the lock is released.
enum SizeCacheMemo {
    /// Octets of size caches kept in memory by the whole process, over all maildrops
    /// (`SizeCache.memoryBytes`: the file's octets plus 56 per entry, ~120 per entry of a
    /// typical name): 8 MiB hold ~70,000 entries.
    static let memoByteBudget = 8 << 20
    /// A maildrop whose cache alone is larger than this (~8,000 typical entries) is not kept:
    /// it is read from disk at each login as before.
    static let memoMaxCacheBytes = 1 << 20

    /// What identifies the file the entries were parsed from (`stat`).
    struct Identity: Equatable {
        var dev: UInt64, ino: UInt64, size: Int64
        var mtimeSec: Int, mtimeNsec: Int, ctimeSec: Int, ctimeNsec: Int

        /// The identity in a `stat` of the file.
        init(_ st: Glibc.stat) {
            dev = UInt64(st.st_dev)
            ino = UInt64(st.st_ino)
            size = Int64(st.st_size)
            mtimeSec = Int(st.st_mtim.tv_sec)
            mtimeNsec = Int(st.st_mtim.tv_nsec)
            ctimeSec = Int(st.st_ctim.tv_sec)
            ctimeNsec = Int(st.st_ctim.tv_nsec)
        }
    }

    /// The Maildir root the cache belongs to and the wire-size rule its sizes were counted under.
    struct Key: Hashable {
        var rootDev: UInt64, rootIno: UInt64
        var addsMissingHeaderEnd: Bool
    }

    private struct Kept {
        var identity: Identity
        var cache: SizeCache
    }

    /// The memo's contents and its bound; the process has one (`state`), tests make their own.
    /// An `LRUTable` (O(1) per operation, nothing to compact) whose least recently used
    /// maildrops are dropped while the octets kept exceed the budget.
    struct Table {
        /// At most this many octets over all maildrops (`memoByteBudget` for the process's).
        let budget: Int
        /// At most this many octets for one maildrop (`memoMaxCacheBytes` for the process's).
        let maxCacheBytes: Int
        /// Unbounded in count: the budget in octets bounds it (every kept cache has octets).
        private var table = LRUTable<Key, Kept>(capacity: Int.max)
        /// Octets kept (`cost`), over all maildrops.
        private(set) var bytes = 0

        /// What keeping `cache` counts against the budget: its octets (`SizeCache.memoryBytes`)
        /// and `perMaildropBytes` for its key, identity and list node, so that even empty caches
        /// are bounded in number and every eviction frees something.
        static func cost(_ cache: SizeCache) -> Int { cache.memoryBytes + perMaildropBytes }
        /// The fixed part of `cost`.
        static let perMaildropBytes = 128

        init(budget: Int, maxCacheBytes: Int) {
            self.budget = budget
            self.maxCacheBytes = maxCacheBytes
        }

        /// Maildrops kept.
        var maildrops: Int { table.count }
        /// Entries of the recency list (one per maildrop kept: nothing stale stays behind).
        var positions: Int { table.keysByRecency.count }

        /// The cache parsed from the file `identity` names, if it is the one kept for `key`;
        /// a hit marks the maildrop recently used.
        mutating func lookUp(_ key: Key, identity: Identity) -> SizeCache? {
            guard let kept = table.value(forKey: key), kept.identity == identity else { return nil }
            return kept.cache
        }

        /// Keeps `cache`, parsed from the file `identity` names, for `key` (replacing what was
        /// kept for it), then drops the least recently used maildrops until the budget holds. A
        /// cache larger than `maxCacheBytes` is not kept. Returns the caches it let go of, for
        /// the caller to free outside the lock.
        @discardableResult
        mutating func remember(_ key: Key, identity: Identity, cache: SizeCache) -> [SizeCache] {
            var dropped: [SizeCache] = []
            if let old = table.removeValue(forKey: key) {
                bytes -= Self.cost(old.cache)
                dropped.append(old.cache)
            }
            let size = Self.cost(cache)
            guard size <= maxCacheBytes, size <= budget else { return dropped }
            table.updateValue(Kept(identity: identity, cache: cache), forKey: key)
            bytes += size
            // Each round drops one kept cache of at least `perMaildropBytes`: at most
            // `maxCacheBytes / perMaildropBytes` rounds, whatever the table holds.
            while bytes > budget, let (_, gone) = table.removeLeastRecent() {
                bytes -= Self.cost(gone.cache)
                dropped.append(gone.cache)
            }
            return dropped
        }
    }

    private static let state = PThreadLocked(Table(budget: memoByteBudget, maxCacheBytes: memoMaxCacheBytes))

    /// `Table.lookUp` on the process's memo.
    static func lookUp(_ key: Key, identity: Identity) -> SizeCache? {
        state.withLock { $0.lookUp(key, identity: identity) }
    }

    /// `Table.remember` on the process's memo; what it drops is freed after the lock is released.
    static func remember(_ key: Key, identity: Identity, cache: SizeCache) {
        let dropped = state.withLock { $0.remember(key, identity: identity, cache: cache) }
        _ = dropped  // released here, outside the lock
    }
}

extension SizeCache {
    /// `load` through `SizeCacheMemo`: one `fstatat` of `pop3d.sizes` (no link followed) when
    /// the file is the one parsed before for this root (`root`: the Maildir root's device and
    /// inode) and rule; otherwise the file is read and parsed as `load` does, and a valid
    /// cache is remembered. Results and errors are `load`'s; `fromMemory` says the file was
    /// neither opened nor parsed.
    static func loadRemembered(rootfd: Int32, root: (dev: UInt, ino: UInt), maxBytes: Int, quick: Bool,
                               rule: WireSizeRule) throws(MaildropError) -> (loaded: Loaded, fromMemory: Bool) {
        let key = memoKey(root: root, rule: rule)
        var st = Glibc.stat()
        if fstatat(rootfd, fileName, &st, AT_SYMLINK_NOFOLLOW) != 0 {
            // No file: what `load`'s open would find. Any other error: `load` says it. A file
            // above `maxBytes` is not taken from memory either: `load` refuses it (or leaves it
            // to the workers when `quick`), as it would without the memo.
            if errno == ENOENT { return (.absent, false) }
        } else if (st.st_mode & S_IFMT) == S_IFREG, Int(st.st_size) <= maxBytes,
                  let cache = SizeCacheMemo.lookUp(key, identity: SizeCacheMemo.Identity(st)) {
            return (.valid(cache), true)
        }
        let (loaded, file) = try loadFile(rootfd: rootfd, maxBytes: maxBytes, quick: quick, rule: rule)
        if case .valid(let cache) = loaded, let file {
            SizeCacheMemo.remember(key, identity: SizeCacheMemo.Identity(file), cache: cache)
        }
        return (loaded, false)
    }

    /// Writes the cache (`write` of `serialize`) and remembers it as written (`SizeCacheMemo`),
    /// so that the next login of the maildrop takes it from memory after one `fstatat` instead
    /// of reading back and parsing the file this listing just wrote. What is kept is this
    /// cache itself (the table `parse` of the written octets would rebuild: the same rows in
    /// the same order, without the file's digits), under the identity of the `fstat` `write`
    /// took after the rename; the memo's budgets apply as to a parsed one, and
    /// `loadRemembered` still leaves a file above an open's read limit to that open's rules.
    /// Errors are `write`'s.
    func saveRemembered(rootfd: Int32, rootPath: String, root: (dev: UInt, ino: UInt)) -> MaildropError? {
        let (error, file) = SizeCache.write(serialize(), rootfd: rootfd, rootPath: rootPath)
        guard error == nil, let file else { return error }
        SizeCacheMemo.remember(SizeCache.memoKey(root: root, rule: rule), identity: SizeCacheMemo.Identity(file), cache: self)
        return nil
    }

    /// The memo's key for the cache of the Maildir root `root` (device, inode) under `rule`.
    static func memoKey(root: (dev: UInt, ino: UInt), rule: WireSizeRule) -> SizeCacheMemo.Key {
        SizeCacheMemo.Key(rootDev: UInt64(root.dev), rootIno: UInt64(root.ino), addsMissingHeaderEnd: rule.addsMissingHeaderEnd)
    }
}
