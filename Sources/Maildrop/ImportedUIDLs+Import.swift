import Glibc

/// Where `pop3d uidl import` reads the UIDLs the old server served.
public enum UIDLImportSource: String, Sendable, CaseIterable {
    /// `dovecot-uidlist` (`%08Xu%08Xv`, or a `P` record's UIDL).
    case dovecot
    /// `courierpop3dsizelist` (`CourierSizeList`).
    case courier
    /// Each message's `X-UIDL:` header (qpopper spools converted to Maildir).
    case xUIDL = "x-uidl"
}

/// What one `Maildrop.importUIDLs` did.
public struct UIDLImportReport: Sendable, Equatable {
    /// The Maildir imported into, as given.
    public var path: String
    /// Messages listed.
    public var messages = 0
    /// Messages whose UIDL the source gave and `pop3d.uidls` now holds (new or already there).
    public var imported = 0
    /// Of them, entries this import added.
    public var added = 0
    /// Messages the source does not know: they keep the UIDL their format gives.
    public var notInSource = 0
    /// Imported UIDLs met twice (`x-uidl`): given a `-<n>` suffix as Dovecot's
    /// `pop3_uidl_duplicates = rename` does, stored, so the suffix never moves.
    public var renamedDuplicates = 0
    /// Entries of messages confirmed gone, dropped.
    public var pruned = 0
    /// Whether `pop3d.uidls` was written.
    public var written = false

    /// An empty report (all counts 0, nothing written) for `path`.
    public init(path: String) { self.path = path }
}

extension Maildrop {
    /// `pop3d uidl import --from SOURCE MAILDIR`: records in `pop3d.uidls` the UIDL `source`
    /// gives each listed message, so that every later login serves it whatever `uidl_format`
    /// is (`ImportedUIDLs`). All or nothing: every check is made before the one atomic write,
    /// and any failure throws `UIDLStateError` with nothing changed:
    /// - the maildrop lock (`pop3d.lock`) is held by a session (`[IN-USE]`), so an import never
    ///   races a login; the lock is held for the whole import;
    /// - the source is missing or does not parse (truncated, wrong version, duplicate UIDs,
    ///   garbage, larger than its limit);
    /// - a source UIDL breaks RFC 1939 §7 (1–70 octets in 0x21–0x7E): the old server served it
    ///   as it was and any change makes clients download that message again, so the operator
    ///   decides (pop3d does not silently hash it);
    /// - an existing `pop3d.uidls` does not parse, or gives a message another UIDL than the
    ///   source (imports from two sources disagree; remove the file to import anew);
    /// - two messages would get one UIDL from a file source (a Dovecot or Courier file giving
    ///   one UID twice is refused by its reader; here: an existing entry and a new one).
    /// Duplicate `X-UIDL:` values (a message copied) get Dovecot's rename suffix, in message
    /// order, and are stored with it. A message without a source UIDL keeps the UIDL its
    /// format gives and is counted in `notInSource`.
    public static func importUIDLs(
        path: String, from source: UIDLImportSource, allowRootSymlink: Bool = false
    ) throws(UIDLStateError) -> UIDLImportReport {
        let drop = try openForAdmin(path: path, allowRootSymlink: allowRootSymlink, uidl: UIDLOptions(format: .maildir))
        defer { drop.close() }
        if let why = drop.statistics.importedUIDLsIgnored {
            throw UIDLStateError("\(path)/\(ImportedUIDLs.fileName) cannot be used (\(why)); fix or remove it, nothing changed")
        }
        var report = UIDLImportReport(path: path)
        report.messages = drop.count
        do {
            let rootfd = try drop.openRoot()
            defer { Sys.close(rootfd) }
            let sourceUIDLs = try drop.readSource(source, rootfd: rootfd)
            var existing = ImportedUIDLs()
            switch try ImportedUIDLs.load(rootfd: rootfd, quick: false) {
            case .absent: break
            case .valid(let s): existing = s
            case .unusable(let why):
                throw UIDLStateError("\(path)/\(ImportedUIDLs.fileName) cannot be used (\(why)); fix or remove it, nothing changed")
            }
            var next = ImportedUIDLs()
            var owner: [String: String] = [:]  // UIDL → unique name
            var listed = Set<String>()
            listed.reserveCapacity(drop.count)
            // First the entries already imported: they were served, they stay. The source must
            // agree with each (for `x-uidl`, up to the rename suffix an earlier import gave).
            for m in drop.messages {
                let name = m.uniqueName
                listed.insert(name)
                guard let old = existing.uidls[name] else { continue }
                if let uidl = sourceUIDLs[name] {
                    guard old == uidl || (source == .xUIDL && old.hasPrefix(uidl + "-")) else {
                        throw UIDLStateError("""
                            \(path): message \(name) already has the imported UIDL "\(old)" and \(source.rawValue) \
                            gives "\(uidl)"; remove \(ImportedUIDLs.fileName) to import anew; nothing changed
                            """)
                    }
                    report.imported += 1
                }
                next.uidls[name] = old
                owner[old] = name
            }
            // Then the new ones, in message order.
            var copies: [String: Int] = [:]
            for m in drop.messages where existing.uidls[m.uniqueName] == nil {
                let name = m.uniqueName
                guard var uidl = sourceUIDLs[name] else {
                    report.notInSource += 1
                    continue
                }
                guard UIDLRules.isValid(uidl.utf8) else {
                    throw UIDLStateError("""
                        \(path): \(source.rawValue) gives message \(name) the UIDL "\(uidl)", which breaks \
                        RFC 1939 §7 (1-70 octets in 0x21-0x7E); nothing changed
                        """)
                }
                if let other = owner[uidl] {
                    guard source == .xUIDL else {
                        throw UIDLStateError("""
                            \(path): messages \(other) and \(name) would both get the UIDL "\(uidl)"; nothing changed
                            """)
                    }
                    // Dovecot's rename: the n-th copy of a UIDL gets `-<n>` (the next n when
                    // that is taken too).
                    let base = uidl
                    var n = copies[base] ?? 1
                    repeat {
                        n += 1
                        uidl = base + "-\(n)"
                    } while owner[uidl] != nil
                    copies[base] = n
                    guard UIDLRules.isValid(uidl.utf8) else {
                        throw UIDLStateError("""
                            \(path): the duplicate X-UIDL of message \(name) with its suffix, "\(uidl)", is longer \
                            than 70 octets; nothing changed
                            """)
                    }
                    report.renamedDuplicates += 1
                }
                guard ImportedUIDLs.storable(name: name, uidl: uidl) else {
                    throw UIDLStateError("\(path): message name \(name) cannot be stored; nothing changed")
                }
                next.uidls[name] = uidl
                owner[uidl] = name
                report.imported += 1
                report.added += 1
            }
            // Entries of messages not listed: kept unless a second listing confirms them gone.
            let stale = Set(existing.uidls.keys.filter { !listed.contains($0) })
            if !stale.isEmpty {
                let found = try drop.locate(uniqueNames: stale)
                for name in stale {
                    if found[name] != nil, let uidl = existing.uidls[name] { next.uidls[name] = uidl } else { report.pruned += 1 }
                }
            }
            if next != existing {
                try StateFile.replace(rootfd: rootfd, rootPath: path, name: ImportedUIDLs.fileName, bytes: next.serialize())
                report.written = true
            }
        } catch let error as UIDLStateError {
            throw error
        } catch {
            throw UIDLStateError("\(path): \(error); nothing changed")
        }
        return report
    }

    /// `Maildrop.open` for the `uidl` subcommands: an existing Maildir only, lock taken (a
    /// session holding it is an error, not a wait).
    static func openForAdmin(path: String, allowRootSymlink: Bool, uidl: UIDLOptions) throws(UIDLStateError) -> Maildrop {
        do {
            return try Maildrop.open(path: path, createIfMissing: false, allowRootSymlink: allowRootSymlink, uidl: uidl)
        } catch .inUse {
            throw UIDLStateError("\(path): in use by a POP3 session (\(lockFileName) is locked); nothing changed, try again")
        } catch {
            throw UIDLStateError("\(path): \(error)")
        }
    }

    /// The Maildir root, checked to be the directory locked at open.
    func openRoot() throws(MaildropError) -> Int32 {
        let rootfd: Int32
        switch try Sys.openDirectory(AT_FDCWD, path, followSymlink: allowRootSymlink, path: path) {
        case .ok(let fd): rootfd = fd
        case .missing: throw .temporary("open(\(path)): the Maildir was removed")
        case .wrongKind(let mode): throw Maildrop.refused(path, mode, root: true)
        }
        var st = Glibc.stat()
        guard fstat(rootfd, &st) == 0, UInt(st.st_dev) == rootIdentity.dev, UInt(st.st_ino) == rootIdentity.ino else {
            Sys.close(rootfd)
            throw .temporary("\(path) is no longer the directory locked at open")
        }
        return rootfd
    }

    /// Unique name → the UIDL `source` gives, for the listed messages (a file source may hold
    /// more). Throws `UIDLStateError` when the source is missing or cannot be used.
    func readSource(_ source: UIDLImportSource, rootfd: Int32) throws -> [String: String] {
        func unusable(_ why: String) -> UIDLStateError {
            UIDLStateError("\(path): \(why); nothing changed")
        }
        switch source {
        case .courier:
            switch try CourierSizeList.load(rootfd: rootfd, quick: false) {
            case .absent:
                throw unusable("no \(CourierSizeList.fileName): Courier's pop3d never listed this maildrop")
            case .unusable(let why): throw unusable(why)
            case .valid(let list): return list.uidls
            }
        case .dovecot:
            switch try dovecotUIDLsForImport(rootfd: rootfd) {
            case .failure(let error): throw unusable(error.description)
            case .success(let uidls): return uidls
            }
        case .xUIDL:
            var out: [String: String] = [:]
            for i in messages.indices {
                guard let value = try xUIDL(i) else { continue }
                out[messages[i].uniqueName] = String(decoding: value, as: UTF8.self)
            }
            return out
        }
    }
}
