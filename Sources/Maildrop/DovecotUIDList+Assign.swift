import ByteCodec
import Glibc

extension Maildrop {
    /// `uidl_format: dovecot | uw | cyrus`: every message's UIDL from its `dovecot-uidlist`
    /// record (its `P` extension when it has one, whatever the format), and the messages in
    /// Dovecot POP3's order (records with an `O` extension first, by it, then by UID).
    ///
    /// Messages without a record get UIDs as Dovecot would give them: under
    /// `dovecot-uidlist.lock` (`DovecotDotlock`), the list is read again, the messages still
    /// missing get UIDs from its next UID on in Dovecot's order for new files, and the list
    /// is written anew and renamed into place; a missing list is created (UIDVALIDITY from the
    /// clock). A list that cannot be used (too large, truncated, garbage, wrong version,
    /// UIDs not increasing) is left alone and this session's UIDLs stay `maildir` ones, with
    /// the reason in `statistics.uidlFallback`.
    ///
    /// A list that does not parse is read once more under the lock before it is called
    /// broken: Dovecot appends records in place under its lock, so a read without it may end
    /// in the middle of a line.
    ///
    /// With `quick` (on the event loop) this throws `.wouldBlock` instead of reading a list
    /// larger than `DovecotUIDList.quickReadBytes`, taking the lock to write one, or taking it
    /// to read a list that did not parse again.
    /// Throws `.temporary` when the lock stays held for `DovecotUIDList.lockWaitSeconds` or the
    /// list cannot be written (the list is then unchanged), and the lock's own open errors.
    func assignDovecotUIDLs(rootfd: Int32, format: UIDLFormat, quick: Bool) throws(MaildropError) {
        let maxBytes = quick ? DovecotUIDList.quickReadBytes : DovecotUIDList.maxFileBytes
        var list = DovecotUIDList(uidValidity: 0, guid: "")
        var needLock = false
        switch try DovecotUIDList.load(rootfd: rootfd, maxBytes: maxBytes, quick: quick) {
        case .unusable(let why):
            statistics.uidlFallback = why
            return
        case .broken:
            // Read again under the lock (Dovecot may have been appending), on a worker.
            if quick { throw .wouldBlock }
            needLock = true
        case .absent:
            if messages.isEmpty { return }
            if quick { throw .wouldBlock }
            needLock = true
        case .valid(let l, _):
            list = l
        }
        let bases = messages.map { DovecotUIDList.NameKey(DovecotUIDList.baseName($0.fileName)) }
        // Each message's record (its index in `list.records`), -1 for none yet.
        var recordOf = [Int](repeating: -1, count: bases.count)
        if !needLock {
            for i in bases.indices {
                if let r = list.byName[bases[i]] { recordOf[i] = r } else { needLock = true }
            }
            if needLock && quick { throw .wouldBlock }
        }
        if needLock {
            let lock = try DovecotDotlock.acquire(rootfd: rootfd, rootPath: path)
            defer { lock.release() }
            // Read again under the lock: another writer may have added records (ours among
            // them) since the read above, and no writer is in the middle of an append now.
            var mode: mode_t = 0o600
            switch try DovecotUIDList.load(rootfd: rootfd, maxBytes: DovecotUIDList.maxFileBytes, quick: false) {
            case .unusable(let why), .broken(let why):
                statistics.uidlFallback = why
                return
            case .absent:
                if messages.isEmpty { return }
                if let index = DovecotUIDList.dovecotIndex(rootfd: rootfd) {
                    // Dovecot would take UIDVALIDITY and the next UID from its index (the main
                    // file plus its log); a list with other values makes it reset the index
                    // ("UIDVALIDITY changed") and every IMAP client resync. Dovecot creates it.
                    statistics.uidlFallback = "no \(DovecotUIDList.fileName), but Dovecot's \(index) is there: "
                        + "a login to Dovecot (IMAP or POP3) creates the list from it"
                    return
                }
                list = DovecotUIDList(uidValidity: DovecotUIDList.newUIDValidity(), guid: DovecotUIDList.newGUID())
            case .valid(let l, let st):
                list = l
                mode = st.st_mode & 0o666
            }
            if list.guid == nil { list.guid = DovecotUIDList.newGUID() }  // Dovecot adds one too
            var missing: [ArraySlice<UInt8>] = []
            for i in bases.indices {
                if let r = list.byName[bases[i]] {
                    recordOf[i] = r
                } else {
                    recordOf[i] = -1
                    missing.append(bases[i].bytes)
                }
            }
            if !missing.isEmpty {
                let added = list.append(names: missing)
                if added > 0 {
                    do throws(MaildropError) {
                        try list.save(rootfd: rootfd, rootPath: path, mode: mode)
                    } catch {
                        // Always temporary (EACCES, EROFS, ENOSPC alike): the operator fixes it
                        // and the client retries; a [SYS/PERM] would make it give up the mailbox,
                        // and serving other UIDLs would make it download everything again.
                        throw .temporary("\(DovecotUIDList.fileName) not written, new messages have no UID: \(error)")
                    }
                    statistics.uidsAssigned = added
                }
                if added < missing.count {
                    statistics.uidlFallback = "\(DovecotUIDList.fileName): the next UID reached 2^32-1"
                    return
                }
                for i in bases.indices where recordOf[i] < 0 { recordOf[i] = list.byName[bases[i]] ?? -1 }
            }
        }

        // UIDLs, set in place (no copy of the listing), then Dovecot POP3's order, which is
        // usually already the delivery order the listing has: then nothing moves.
        var keys: [(order: UInt64, uid: UInt32, index: Int, record: Int)] = []
        keys.reserveCapacity(messages.count)
        var sorted = true
        for i in bases.indices {
            let r = recordOf[i]
            guard r >= 0 else {  // not reached: all were assigned
                statistics.uidlFallback = "\(DovecotUIDList.fileName) lacks records it was given"
                return
            }
            // Records with an O extension first (by it, then by UID), then the rest by UID.
            let record = list.records[r]
            let key = (order: record.pop3Order.map { UInt64($0) } ?? (UInt64(1) << 32), uid: record.uid, index: i, record: r)
            if let last = keys.last, (last.order, last.uid) > (key.order, key.uid) { sorted = false }
            keys.append(key)
        }
        for (i, key) in keys.enumerated() {
            let record = list.records[key.record]
            if let saved = record.pop3UIDL {
                // An empty P is Dovecot's shorthand for the base file name.
                messages[i].uid = saved.isEmpty ? String(decoding: bases[i].bytes, as: UTF8.self) : saved
            } else {
                messages[i].uid = DovecotUIDList.uidl(format: format, uid: key.uid, uidValidity: list.uidValidity)
            }
        }
        if !sorted {
            keys.sort { ($0.order, $0.uid) < ($1.order, $1.uid) }
            messages = keys.map { messages[$0.index] }
        }
    }
}

extension DovecotUIDList {
    /// A UIDL of `format` from a UID and the list's UIDVALIDITY: Dovecot's `%08Xu%08Xv`,
    /// UW-IMAP's `%08Xv%08Xu` (8 hex digits each, lower-case: Dovecot's `%X` modifier prints
    /// with `%llx`, whatever the capital X suggests; checked against Dovecot 2.3.19 in
    /// Tests/e2e/test_uidl_dovecot.py), Cyrus' `%v.%u` (decimal).
    static func uidl(format: UIDLFormat, uid: UInt32, uidValidity: UInt32) -> String {
        switch format {
        case .cyrus: return "\(uidValidity).\(uid)"
        case .uw: return hex16(uidValidity, uid)
        default: return hex16(uid, uidValidity)
        }
    }

    /// `%08x%08x` of `a` and `b` in one allocation (it runs once per message at login).
    static func hex16(_ a: UInt32, _ b: UInt32) -> String {
        String(unsafeUninitializedCapacity: 16) { buf in
            let digits: StaticString = "0123456789abcdef"
            let v = UInt64(a) << 32 | UInt64(b)
            for k in 0..<16 {
                buf[k] = digits.utf8Start[Int((v >> (60 - 4 * UInt64(k))) & 0xF)]
            }
            return 16
        }
    }

    /// Dovecot's index files in the Maildir (`mail_location` without `INDEX=`), if any.
    static func dovecotIndex(rootfd: Int32) -> String? {
        var st = Glibc.stat()
        for name in ["dovecot.index", "dovecot.index.log"] where fstatat(rootfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            return name
        }
        return nil
    }

    /// UIDVALIDITY of a new list: the current time, as Dovecot's fallback when no index or
    /// `dovecot-uidvalidity` file gives one (never 0).
    static func newUIDValidity() -> UInt32 {
        let now = time(nil)
        return now > 0 && now < Int(UInt32.max) ? UInt32(now) : 1
    }

    /// A mailbox GUID as Dovecot writes it: 128 random bits, 32 lower-case hex digits.
    static func newGUID() -> String {
        var g = SystemRandomNumberGenerator()
        return Hex.encodedString((0..<16).map { _ in UInt8.random(in: 0...255, using: &g) })
    }
}
