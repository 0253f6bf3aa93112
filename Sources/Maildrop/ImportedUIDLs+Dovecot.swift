extension Maildrop {
    /// The UIDLs Dovecot serves for the listed messages (unique name → UIDL, `%08Xu%08Xv` or
    /// a `P` record's), read only, for `pop3d uidl import --from dovecot` and `check`: the one
    /// place the import meets Dovecot's `dovecot-uidlist` (issue 14, helper A's reader,
    /// `DovecotUIDList*.swift`). nil: this build has no Dovecot reader; a failure: the file
    /// cannot be used (the reason).
    func dovecotUIDLsForImport(rootfd: Int32) throws(MaildropError) -> Result<[String: String], UIDLStateError>? {
        // Wired to `DovecotUIDList` when the branches are merged.
        nil
    }
}
