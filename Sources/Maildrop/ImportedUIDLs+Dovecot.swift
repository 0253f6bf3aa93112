extension Maildrop {
    /// The UIDLs Dovecot serves for the listed messages (unique name → UIDL, `%08Xu%08Xv` or
    /// a `P` record's), read only, for `pop3d uidl import --from dovecot` and `check`: the one
    /// place the import meets Dovecot's `dovecot-uidlist` (`DovecotUIDList*.swift`). A failure:
    /// the file is missing or cannot be used (the reason). Messages without a record are left
    /// out (Dovecot would give them a UID at its next listing; the import records none).
    func dovecotUIDLsForImport(rootfd: Int32) throws(MaildropError) -> Result<[String: String], UIDLStateError> {
        switch try DovecotUIDList.load(rootfd: rootfd, maxBytes: DovecotUIDList.maxFileBytes, quick: false) {
        case .absent:
            return .failure(UIDLStateError("no \(DovecotUIDList.fileName) in \(path)"))
        case .unusable(let why), .broken(let why):
            return .failure(UIDLStateError(why))
        case .valid(let list, _):
            var out: [String: String] = [:]
            for m in messages {
                let base = DovecotUIDList.baseName(m.fileName)
                guard let i = list.byName[DovecotUIDList.NameKey(base)] else { continue }
                let record = list.records[i]
                if let saved = record.pop3UIDL {
                    // An empty P is Dovecot's shorthand for the base file name.
                    out[m.uniqueName] = saved.isEmpty ? String(decoding: base, as: UTF8.self) : saved
                } else {
                    out[m.uniqueName] = DovecotUIDList.uidl(format: .dovecot, uid: record.uid, uidValidity: list.uidValidity)
                }
            }
            return .success(out)
        }
    }
}
