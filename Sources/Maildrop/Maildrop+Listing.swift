import Dispatch
import Glibc
import Synchronization

extension Maildrop {
    /// Lists new/ and cur/, sizes every message (W= field, cache, or a read)
    /// and numbers them in delivery order.
    ///
    /// A maildrop of more than `LoginIndex.minimumMessages` messages keeps a login index
    /// (`pop3d.index`, `LoginIndex`): a login whose folders are as the index recorded them reads
    /// it instead of listing and `stat`ing anything; a folder that changed is listed, and only
    /// the names the index does not hold are `stat`ed and sized. The result is the same
    /// messages, sizes, UIDLs and order as a listing from scratch. A `quick` open never reads
    /// an index: a maildrop that has one is large, and is left to the workers (`.wouldBlock`).
    func list(rootfd: Int32, quick: Bool = false, cancellation: CancellationFlag? = nil) throws(MaildropError) {
        if quick && LoginIndex.present(rootfd: rootfd) { throw .wouldBlock }
        var stats = OpenStatistics()
        var index: LoginIndex? = nil
        var indexFound = false
        if !quick {
            switch LoginIndex.load(rootfd: rootfd, rule: wireSizeRule) {
            case .absent: break
            case .valid(let loaded):
                indexFound = true
                if loaded.rootDev == UInt64(rootIdentity.dev) && loaded.rootIno == UInt64(rootIdentity.ino) {
                    index = loaded
                } else {
                    // Copied from another Maildir, or this one was replaced by a copy.
                    stats.indexDiscarded = "it was written for another directory (device and inode differ)"
                }
            case .unusable(let why):
                indexFound = true
                stats.indexDiscarded = why
            }
            if let cancellation, cancellation.isCancelled { throw .cancelled }
        }
        let folderFDs = (new: try directoryFD(.new), cur: try directoryFD(.cur))
        if let index,
           index.trusts(.new, now: try folderState(folderFDs.new, .new)),
           index.trusts(.cur, now: try folderState(folderFDs.cur, .cur)) {
            // Warm: nothing was created, renamed or removed in either folder since the index
            // was written. Its entries are already verified, deduplicated and in order.
            messages = index.entries.map(\.info)
            stats.sizesFromIndex = messages.count
            statistics = stats
            return
        }
        // Read before the folders' states that the new index records (`LoginIndex`, "When it is
        // trusted"): a change after this moment stamps the folder at or after it.
        let clock = quick ? nil : LoginIndex.fileSystemClock(lockfd: lockfd)
        // A quick open never writes an index, so it needs no folder states (two fstats).
        let states = quick
            ? (new: LoginIndex.FolderState.unknown, cur: LoginIndex.FolderState.unknown)
            : (new: try folderState(folderFDs.new, .new), cur: try folderState(folderFDs.cur, .cur))

        var cache = SizeCache.Table(rule: wireSizeRule)
        /// Sizes to write to the size cache besides the entries `cache` had that were used:
        /// measured by this listing, or given by a login index the size cache takes over from.
        var added: [ByteName: SizeCache.Entry] = [:]
        var cacheDirty = false
        // The size cache is read only when a name lacks a usable W= (issue 17): a maildrop
        // whose names all carry their sizes never opens it. With a usable index the sizes of
        // the names it lacks are new mail: the size cache (which an indexed maildrop no longer
        // writes) would not know them either, so it is never read then.
        // Unique names, compared as octets (`ByteName`): two names that differ only in
        // Unicode normalization are two messages. The cache entries still wanted are marked
        // in `cache` itself (`markUsed`, issue 17: a second set hashed every name again).
        var cacheRead = index != nil
        func readCache() throws(MaildropError) {
            cacheRead = true
            stats.sizeCacheRead = true
            let (loaded, fromMemory) = try SizeCache.loadRemembered(
                rootfd: rootfd, root: rootIdentity, maxBytes: quick ? Maildrop.quickCacheBytes : SizeCache.maxFileBytes,
                quick: quick, rule: wireSizeRule)
            stats.sizeCacheFromMemory = fromMemory
            switch loaded {
            case .absent: break
            case .valid(let loaded):
                // The table (from memory, shared with `SizeCacheMemo`: marking rows used below
                // copies it once, the memo's stays unmarked).
                cache = loaded.table
            case .unusable(let why):
                // Rewritten below (with the entries this listing can vouch for), so a broken
                // cache costs one worker read, not one at every login.
                stats.cacheDiscarded = why
                cacheDirty = true
            }
            if let cancellation, cancellation.isCancelled { throw .cancelled }  // after a 64 MiB cache
        }
        var seen = SeenNames()
        var listed: [LoginIndex.Entry] = []
        /// The index's entries by unique name, built at the first renamed message.
        var byUnique: [String: Int]? = nil

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Maildrop.measureChunkBytes, alignment: 16)
        defer { buffer.deallocate() }
        /// Files whose size only a read can give, measured after the listing (in parallel when
        /// there are many: `measurePending`); their `listed` entries hold 0 until then.
        var pending: [PendingMeasure] = []

        for (folder, dirfd, state) in [(MessageInfo.Folder.new, folderFDs.new, states.new), (.cur, folderFDs.cur, states.cur)] {
            if let index, index.trusts(folder, now: state) {
                // This folder did not change: its part of the index, without a listing.
                for e in index.entries where e.info.folder == folder {
                    guard seen.insert(e.info.uniqueName) else {
                        stats.entriesSkipped += 1
                        continue
                    }
                    stats.sizesFromIndex += 1
                    listed.append(e)
                }
                continue
            }
            // Names the index holds for this folder, verified (stat, sized) when indexed.
            var known: [ByteName: Int] = [:]
            if let index {
                for (i, e) in index.entries.enumerated() where e.info.folder == folder { known[ByteName(e.info.fileName)] = i }
            }
            // Paths are formatted only for an error message (issue 17).
            let root = path
            let dirPath = { root + "/" + folder.directoryName }
            // The descriptors were opened by `open` just before: already at the start. A quick
            // open stops reading the directory as soon as it is too large for the loop.
            let limit = quick ? Maildrop.quickEntryLimit - listed.count : Int.max
            let entries = try Sys.listDirectory(dirfd, path: dirPath(), rewind: false, limit: limit, scratch: buffer)
            stats.foldersListed += 1
            if quick && entries.count > limit { throw .wouldBlock }
            seen.reserveCapacity(listed.count + entries.count)
            listed.reserveCapacity(listed.count + entries.count)
            for entry in entries {
                if let cancellation, cancellation.isCancelled { throw .cancelled }
                // d_type is only a hint (DT_UNKNOWN on some filesystems); the
                // stat below decides.
                if entry.type != UInt8(DT_REG) && entry.type != UInt8(DT_UNKNOWN) {
                    stats.entriesSkipped += 1
                    continue
                }
                if !known.isEmpty, let i = known[ByteName(entry.name)], let index {
                    // The same name as when it was stat'ed and sized: Maildir files do not
                    // change after delivery, so no stat (issue 17's rule; a name that is new
                    // is still checked below, its S=/W= against its file the first time).
                    let e = index.entries[i]
                    guard seen.insert(e.info.uniqueName) else {
                        stats.entriesSkipped += 1
                        continue
                    }
                    stats.sizesFromIndex += 1
                    listed.append(e)
                    continue
                }
                let st: Glibc.stat
                switch try Sys.stat(dirfd, entry.name, path: dirPath() + "/" + entry.name) {
                case .ok(let s): st = s
                case .missing: continue  // renamed or expunged since readdir
                }
                guard (st.st_mode & S_IFMT) == S_IFREG else {
                    stats.entriesSkipped += 1
                    continue
                }
                let name = MaildirName(entry.name)
                // A move new/ → cur/ between our two readdirs shows the same
                // message twice; the first sighting wins.
                guard seen.insert(name.uniqueName) else {
                    stats.entriesSkipped += 1
                    continue
                }
                let fileSize = Int(st.st_size)
                let mtimeSec = Int(st.st_mtim.tv_sec)
                let mtimeNsec = Int(st.st_mtim.tv_nsec)

                var size: Int? = nil
                if let w = name.wField, wireSizeRule.trustsNameSizes,
                   Maildrop.consistent(w: w, s: name.sField, fileSize: fileSize) {
                    size = w
                    stats.sizesFromName += 1
                } else if let index, let e = index.entry(uniqueName: name.uniqueName, byUnique: &byUnique),
                          e.info.fileSize == fileSize, e.mtimeSec == mtimeSec, e.mtimeNsec == mtimeNsec {
                    // Renamed by another program (flags, new/ → cur/): the same file, sized before.
                    size = e.info.size
                    stats.sizesFromIndex += 1
                } else {
                    // No usable W= (or one that disagrees with the file: then the cache is not
                    // trusted blindly either, it is checked against this file's size and mtime).
                    if !cacheRead { try readCache() }
                    // Found by a binary search of the names' octets: no hashing (issue 17).
                    if let row = cache.find(name.uniqueName), case let e = cache.rows[row].entry,
                       e.fileSize == fileSize, e.mtimeSec == mtimeSec, e.mtimeNsec == mtimeNsec {
                        // `parse` checked the size against this file size, which is the file's.
                        size = e.crlfSize
                        stats.sizesFromCache += 1
                        cache.markUsed(row)
                    } else {
                        if quick { throw .wouldBlock }
                        pending.append(PendingMeasure(listed: listed.count, dirfd: dirfd, name: entry.name))
                    }
                }
                let info = MessageInfo(
                    folder: folder, fileName: entry.name, uniqueName: name.uniqueName, uid: name.uid,
                    size: size ?? 0, fileSize: fileSize)
                listed.append(LoginIndex.Entry(
                    info: info, mtimeSec: mtimeSec, mtimeNsec: mtimeNsec,
                    seconds: name.seconds ?? UInt64(max(mtimeSec, 0)), microseconds: name.microseconds))
            }
        }

        if !pending.isEmpty {
            let sizes = try measurePending(pending, buffer: buffer, cancellation: cancellation)
            var vanished = Set<Int>()
            for (job, size) in zip(pending, sizes) {
                guard let size else {
                    // Vanished, or replaced by something that is not a regular file.
                    vanished.insert(job.listed)
                    stats.entriesSkipped += 1
                    continue
                }
                stats.messagesRead += 1
                listed[job.listed].info.size = size
                let e = listed[job.listed]
                if SizeCache.storable(e.info.uniqueName) {
                    added[ByteName(e.info.uniqueName)] = SizeCache.Entry(
                        fileSize: e.info.fileSize, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, crlfSize: size)
                    cacheDirty = true
                }
            }
            if !vanished.isEmpty {
                listed = listed.enumerated().filter { !vanished.contains($0.offset) }.map(\.element)
            }
        }

        // Delivery order: seconds of the name (the file's mtime for names
        // without them), then microseconds, then the unique name bytes.
        listed.sort { a, b in
            if a.seconds != b.seconds { return a.seconds < b.seconds }
            if a.microseconds != b.microseconds { return a.microseconds < b.microseconds }
            return a.info.uniqueName.utf8.lexicographicallyPrecedes(b.info.uniqueName.utf8)
        }

        Maildrop.runTestHook(path)

        // A large maildrop keeps its index (which replaces the size cache for it); a small one
        // none, so that the loop can list it (`quick` opens leave maildrops with an index to
        // the workers).
        var indexSaved = false
        if !quick && listed.count > LoginIndex.minimumMessages {
            var fresh = LoginIndex(
                rootDev: UInt64(rootIdentity.dev), rootIno: UInt64(rootIdentity.ino), clock: clock,
                new: states.new, cur: states.cur, entries: listed)
            fresh.rule = wireSizeRule
            let error = fresh.save(rootfd: rootfd, rootPath: path)
            indexSaved = error == nil
            stats.indexWritten = indexSaved
            stats.indexError = error
        } else if indexFound {
            LoginIndex.remove(rootfd: rootfd)
        }

        if !indexSaved {
            // Every name carried a usable W=, so the cache was not read: it is looked at (one
            // fstatat) only to drop what it holds, as a listing that read it would have. An
            // absent cache or the empty one such a listing writes is left alone unread.
            if !cacheRead && SizeCache.mayHoldEntries(rootfd: rootfd, rule: wireSizeRule) { try readCache() }
            // Sizes the index gave go to the size cache, which takes over from it.
            // By index: `for e in listed` copied every entry (three strings retained and
            // released) to read one flag (issue 17).
            for i in listed.indices where listed[i].fromIndex && SizeCache.storable(listed[i].info.uniqueName) {
                let e = listed[i]
                added[ByteName(e.info.uniqueName)] = SizeCache.Entry(
                    fileSize: e.info.fileSize, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, crlfSize: e.info.size)
                cacheDirty = true
            }
            // Entries of messages that are gone are dropped, so the cache does
            // not grow forever.
            if cache.usedCount != cache.rows.count { cacheDirty = true }
            if cacheDirty {
                // The entries used, then the sizes added (which replace an entry of the same
                // name whose file had changed).
                var kept: [ByteName: SizeCache.Entry] = [:]
                kept.reserveCapacity(cache.usedCount + added.count)
                for row in cache.rows.indices where cache.rows[row].used {
                    kept[ByteName(cache.name(row))] = cache.rows[row].entry
                }
                for (name, e) in added { kept[name] = e }
                let out = SizeCache(table: SizeCache.Table(entries: kept, rule: wireSizeRule))
                // Remembered as written: the next login does not read back this file.
                let error = out.saveRemembered(rootfd: rootfd, rootPath: path, root: rootIdentity)
                stats.cacheWritten = error == nil
                stats.cacheError = error
            }
        }
        messages = listed.map { $0.info }  // the field only, not a copy of each whole entry
        statistics = stats
    }

    /// What `fstat` says of the folder open at `fd` (the login index compares it).
    private func folderState(_ fd: Int32, _ folder: MessageInfo.Folder) throws(MaildropError) -> LoginIndex.FolderState {
        var st = Glibc.stat()
        _ = try Sys.call("fstat", path + "/" + folder.directoryName) { fstat(fd, &st) }
        return LoginIndex.FolderState(st)
    }

    /// The largest CRLF size a file of `fileSize` octets can have: every octet an LF that
    /// gains a CR, plus the CRLF ending an unterminated last line (2 × size + 2), saturating
    /// at `Int.max` so that a huge (sparse) file cannot make the bound itself trap.
    static func maxCRLFSize(fileSize: Int) -> Int {
        guard fileSize >= 0 else { return 0 }
        let (doubled, o1) = fileSize.multipliedReportingOverflow(by: 2)
        if o1 { return Int.max }
        let (bound, o2) = doubled.addingReportingOverflow(2)
        return o2 ? Int.max : bound
    }

    /// Whether a `W=` field can be the CRLF size of a file of `fileSize`
    /// octets: never smaller than the file, at most one CR per octet plus the
    /// final CRLF, and `S=` (when present) must still match the file.
    static func consistent(w: Int, s: Int?, fileSize: Int) -> Bool {
        if let s, s != fileSize { return false }
        return w >= fileSize && w <= maxCRLFSize(fileSize: fileSize)
    }

    /// Where each of `uniqueNames` lives now: another agent may have changed its flags (new
    /// `:2,` suffix) or moved it new/ → cur/. One listing of cur/ and new/ for all of them
    /// (cur/ first: a message seen in both during a move is where it went). A name not in
    /// the result is gone.
    func locate(uniqueNames: Set<String>) throws(MaildropError) -> [String: (folder: MessageInfo.Folder, fileName: String)] {
        directoryScans += 1
        var found: [String: (folder: MessageInfo.Folder, fileName: String)] = [:]
        for folder in [MessageInfo.Folder.cur, .new] {
            let dirPath = path + "/" + folder.directoryName
            for entry in try Sys.listDirectory(try directoryFD(folder), path: dirPath) {
                let unique = MaildirName(entry.name).uniqueName
                if uniqueNames.contains(unique) && found[unique] == nil {
                    found[unique] = (folder, entry.name)
                }
            }
        }
        return found
    }

    /// After a message was not found under its listed name: one listing updates the place of
    /// every listed message another program renamed, so that a client fetching all of a
    /// renamed maildrop costs one listing, not one per message.
    func relocateAll() throws(MaildropError) {
        let now = try locate(uniqueNames: Set(messages.map(\.uniqueName)))
        for i in messages.indices {
            if let place = now[messages[i].uniqueName] {
                messages[i].folder = place.folder
                messages[i].fileName = place.fileName
            } else {
                // Not in new/ nor cur/: removed by another program. One listing tells for
                // every message, so later RETRs of removed ones cost no listing at all.
                removedSinceLogin.insert(i)
            }
        }
    }
}

/// A file `list` must read to size (no usable `W=`, cache entry or index entry).
struct PendingMeasure: Sendable {
    /// Its entry in `list`'s `listed`.
    let listed: Int
    let dirfd: Int32
    let name: String
}

extension Maildrop {
    /// Files measured per cold login before the reading is split across threads: below it,
    /// one thread (thread start-up would cost more than it saves).
    public static let parallelMeasureMinimum = 64
    /// Threads a cold login reads message files with (the storage worker it runs on counts as
    /// one): the reads of a cold Maildir are open/read/close of thousands of files, kernel work
    /// that goes as fast as the cores allow. 2 is what the storage pool has (`storageWorkers`).
    public static let coldReadThreads = 2

    /// The CRLF size of each pending file, in order (nil: gone or no longer a regular file).
    /// Many files are split into `coldReadThreads` contiguous parts read at once, each with its
    /// own buffer (`DispatchQueue.concurrentPerform`, whose threads are the process's shared
    /// GCD pool; it returns when every part is done). The first error (or `.cancelled`) wins.
    func measurePending(_ pending: [PendingMeasure], buffer: UnsafeMutableRawBufferPointer,
                        cancellation: CancellationFlag?) throws(MaildropError) -> [Int?] {
        let rule = wireSizeRule
        let root = path
        @Sendable func measure(_ job: PendingMeasure, _ buf: UnsafeMutableRawBufferPointer) throws(MaildropError) -> Int? {
            try CRLFSizeCounter.measure(
                dirfd: job.dirfd, name: job.name, path: root + "/" + job.name, buffer: buf,
                cancellation: cancellation, rule: rule)
        }
        let parts = pending.count >= Self.parallelMeasureMinimum ? Self.coldReadThreads : 1
        if parts == 1 {
            var out: [Int?] = []
            out.reserveCapacity(pending.count)
            for job in pending { out.append(try measure(job, buffer)) }
            return out
        }
        let results = MeasureResults(count: pending.count, parts: parts)
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let lower = pending.count * part / parts
            let upper = pending.count * (part + 1) / parts
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: Maildrop.measureChunkBytes, alignment: 16)
            defer { buf.deallocate() }
            for i in lower..<upper {
                if results.stopped { return }
                do throws(MaildropError) {
                    results.set(i, try measure(pending[i], buf))
                } catch {
                    results.fail(part: part, error)
                    return
                }
            }
        }
        // concurrentPerform returned: every part is done, and its writes are visible here.
        defer { results.deallocate() }
        if let error = results.firstError { throw error }
        return results.sizes
    }
}

extension LoginIndex.FolderState {
    /// A state not read: a quick open neither trusts nor writes an index, so it spares the
    /// two `fstat`s of new/ and cur/ (issue 17). Never compared with a real state.
    static let unknown = LoginIndex.FolderState(
        dev: 0, ino: 0, mtime: LoginIndex.Stamp(sec: 0, nsec: 0), ctime: LoginIndex.Stamp(sec: 0, nsec: 0))
}

/// The parts' results. Each part writes only its own indices of `sizes` and its own slot of
/// `errors`, so the parts share no memory but the `stop` flag, and `list` reads them only after
/// `concurrentPerform` has returned (which orders every part's writes before it). No lock per
/// file: before, a `Mutex` taken for every file measured was also invisible to ThreadSanitizer
/// when contended (its slow path is a futex in the uninstrumented runtime), which reported
/// this as a race (`make tsan`).
private final class MeasureResults: @unchecked Sendable {
    private let sizeSlots: UnsafeMutableBufferPointer<Int?>
    private let errorSlots: UnsafeMutableBufferPointer<MaildropError?>
    /// Raised by a part that failed (or was cancelled): the others stop at their next file.
    private let stop = Atomic<Bool>(false)

    init(count: Int, parts: Int) {
        sizeSlots = .allocate(capacity: count)
        sizeSlots.initialize(repeating: nil)
        errorSlots = .allocate(capacity: parts)
        errorSlots.initialize(repeating: nil)
    }

    /// Part-owned index `i` only.
    func set(_ i: Int, _ size: Int?) { sizeSlots[i] = size }
    /// Part `part`'s own error slot; tells the other parts to stop.
    func fail(part: Int, _ error: MaildropError) {
        errorSlots[part] = error
        stop.store(true, ordering: .releasing)
    }
    var stopped: Bool { stop.load(ordering: .acquiring) }

    // After the join only.
    var firstError: MaildropError? { errorSlots.lazy.compactMap { $0 }.first }
    var sizes: [Int?] { Array(sizeSlots) }

    func deallocate() {
        sizeSlots.deinitialize()
        sizeSlots.deallocate()
        errorSlots.deinitialize()
        errorSlots.deallocate()
    }
}
