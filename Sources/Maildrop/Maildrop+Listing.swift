import Glibc

extension Maildrop {
    /// Lists new/ and cur/, sizes every message (W= field, cache, or a read)
    /// and numbers them in delivery order.
    func list(rootfd: Int32, quick: Bool = false) throws(MaildropError) {
        var stats = OpenStatistics()
        var cache = SizeCache.load(rootfd: rootfd)
        var cacheDirty = false
        var used = Set<String>()
        var seen = Set<String>()
        var listed: [(info: MessageInfo, key: MaildirName, mtime: Int)] = []

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Maildrop.measureChunkBytes, alignment: 16)
        defer { buffer.deallocate() }

        for folder in [MessageInfo.Folder.new, .cur] {
            let dirfd = try directoryFD(folder)
            let dirPath = path + "/" + folder.directoryName
            // The descriptors were opened by `open` just before: already at the start.
            let entries = try Sys.listDirectory(dirfd, path: dirPath, rewind: false)
            if quick && listed.count + entries.count > Maildrop.quickEntryLimit { throw .wouldBlock }
            for entry in entries {
                // d_type is only a hint (DT_UNKNOWN on some filesystems); the
                // stat below decides.
                if entry.type != UInt8(DT_REG) && entry.type != UInt8(DT_UNKNOWN) {
                    stats.entriesSkipped += 1
                    continue
                }
                let st: Glibc.stat
                switch try Sys.stat(dirfd, entry.name, path: dirPath + "/" + entry.name) {
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
                guard seen.insert(name.uniqueName).inserted else {
                    stats.entriesSkipped += 1
                    continue
                }
                let fileSize = Int(st.st_size)
                let mtimeSec = Int(st.st_mtim.tv_sec)
                let mtimeNsec = Int(st.st_mtim.tv_nsec)

                var size: Int? = nil
                if let w = name.wField, Maildrop.consistent(w: w, s: name.sField, fileSize: fileSize) {
                    size = w
                    stats.sizesFromName += 1
                } else if let e = cache.entries[name.uniqueName], e.fileSize == fileSize,
                          e.mtimeSec == mtimeSec, e.mtimeNsec == mtimeNsec {
                    size = e.crlfSize
                    stats.sizesFromCache += 1
                    used.insert(name.uniqueName)
                } else {
                    if quick { throw .wouldBlock }
                    size = try CRLFSizeCounter.measure(
                        dirfd: dirfd, name: entry.name, path: dirPath + "/" + entry.name, buffer: buffer)
                    guard size != nil else { continue }  // vanished meanwhile
                    stats.messagesRead += 1
                    if SizeCache.storable(name.uniqueName) {
                        cache.entries[name.uniqueName] = SizeCache.Entry(
                            fileSize: fileSize, mtimeSec: mtimeSec, mtimeNsec: mtimeNsec, crlfSize: size ?? 0)
                        used.insert(name.uniqueName)
                        cacheDirty = true
                    }
                }
                let info = MessageInfo(
                    folder: folder, fileName: entry.name, uniqueName: name.uniqueName, uid: name.uid,
                    size: size ?? 0, fileSize: fileSize)
                listed.append((info, name, mtimeSec))
            }
        }

        // Entries of messages that are gone are dropped, so the cache does
        // not grow forever.
        if cache.entries.count != used.count {
            cache.entries = cache.entries.filter { used.contains($0.key) }
            cacheDirty = true
        }
        if cacheDirty {
            let error = cache.save(rootfd: rootfd, rootPath: path)
            stats.cacheWritten = error == nil
            stats.cacheError = error
        }

        // Delivery order: seconds of the name (the file's mtime for names
        // without them), then microseconds, then the unique name bytes.
        listed.sort { a, b in
            let sa = a.key.seconds ?? UInt64(max(a.mtime, 0))
            let sb = b.key.seconds ?? UInt64(max(b.mtime, 0))
            if sa != sb { return sa < sb }
            if a.key.microseconds != b.key.microseconds { return a.key.microseconds < b.key.microseconds }
            return a.info.uniqueName.utf8.lexicographicallyPrecedes(b.info.uniqueName.utf8)
        }
        messages = listed.map(\.info)
        statistics = stats
    }

    /// Whether a `W=` field can be the CRLF size of a file of `fileSize`
    /// octets: never smaller than the file, at most one CR per octet plus the
    /// final CRLF, and `S=` (when present) must still match the file.
    static func consistent(w: Int, s: Int?, fileSize: Int) -> Bool {
        if let s, s != fileSize { return false }
        return w >= fileSize && w <= 2 * fileSize + 2
    }

    /// Finds where the message with `uniqueName` lives now: another agent may
    /// have changed its flags (new `:2,` suffix) or moved it new/ → cur/.
    func locate(uniqueName: String) throws(MaildropError) -> (folder: MessageInfo.Folder, fileName: String)? {
        for folder in [MessageInfo.Folder.cur, .new] {
            let dirPath = path + "/" + folder.directoryName
            for entry in try Sys.listDirectory(try directoryFD(folder), path: dirPath)
            where MaildirName(entry.name).uniqueName == uniqueName {
                return (folder, entry.name)
            }
        }
        return nil
    }
}
