import Glibc
import SystemCalls

/// The size caches this process parsed, kept in memory by maildrop (issue 17): a login whose
/// `pop3d.sizes` is still the file parsed before takes its entries from here after one
/// `fstatat`, instead of opening, reading and parsing the file again (`openat`, `fstat`,
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
/// `memoMaxCacheBytes` for one maildrop: the oldest maildrops are dropped first (insertion
/// order, not use: a hit costs no write). Shared by the loop and the storage workers behind a
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
        /// Its position in `Table.order`: a key remembered again gets a new one, and its old
        /// position is skipped at eviction.
        var sequence: UInt64
    }

    /// The memo's contents and its bound; the process has one (`state`), tests make their own.
    struct Table {
        /// At most this many octets over all maildrops (`memoByteBudget` for the process's).
        let budget: Int
        /// At most this many octets for one maildrop (`memoMaxCacheBytes` for the process's).
        let maxCacheBytes: Int
        private var table: [Key: Kept] = [:]
        /// Keys in insertion order, from `orderStart` on.
        private var order: [(key: Key, sequence: UInt64)] = []
        private var orderStart = 0
        private var nextSequence: UInt64 = 0
        /// Octets kept (`SizeCache.memoryBytes`), over all maildrops.
        private(set) var bytes = 0

        init(budget: Int, maxCacheBytes: Int) {
            self.budget = budget
            self.maxCacheBytes = maxCacheBytes
        }

        /// Maildrops kept.
        var maildrops: Int { table.count }
        /// Positions in the insertion order, stale ones included (bounded: tests).
        var positions: Int { order.count - orderStart }

        /// The cache parsed from the file `identity` names, if it is the one kept for `key`.
        func lookUp(_ key: Key, identity: Identity) -> SizeCache? {
            guard let kept = table[key], kept.identity == identity else { return nil }
            return kept.cache
        }

        /// Keeps `cache`, parsed from the file `identity` names, for `key` (replacing what was
        /// kept for it), then drops the oldest maildrops until the budget holds. A cache larger
        /// than `maxCacheBytes` is not kept. Returns the caches it let go of, for the caller to
        /// free outside the lock.
        @discardableResult
        mutating func remember(_ key: Key, identity: Identity, cache: SizeCache) -> [SizeCache] {
            var dropped: [SizeCache] = []
            let size = cache.memoryBytes
            if let old = table.removeValue(forKey: key) {
                bytes -= old.cache.memoryBytes
                dropped.append(old.cache)
            }
            guard size <= maxCacheBytes, size <= budget else { return dropped }
            let sequence = nextSequence
            nextSequence &+= 1
            table[key] = Kept(identity: identity, cache: cache, sequence: sequence)
            bytes += size
            order.append((key, sequence))
            while bytes > budget, orderStart < order.count {
                let oldest = order[orderStart]
                orderStart += 1
                if let kept = table[oldest.key], kept.sequence == oldest.sequence {
                    table.removeValue(forKey: oldest.key)
                    bytes -= kept.cache.memoryBytes
                    dropped.append(kept.cache)
                }
            }
            // Positions left behind (consumed, or of keys remembered again) are dropped once
            // they outnumber the live ones, so `order` stays within a few times `table`.
            if order.count - orderStart > 2 * table.count + 1024 || orderStart > 1024 {
                let live = table
                order = order[orderStart...].filter { live[$0.key]?.sequence == $0.sequence }
                orderStart = 0
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
        let key = SizeCacheMemo.Key(rootDev: UInt64(root.dev), rootIno: UInt64(root.ino),
                                    addsMissingHeaderEnd: rule.addsMissingHeaderEnd)
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
}
