extension CourierSizeList {
    /// Reads and parses `courierpop3dsizelist` in `rootfd`; a `quick` open reads at most
    /// `Maildrop.quickCacheBytes` (more: `.wouldBlock`, a worker reads it).
    static func load(rootfd: Int32, quick: Bool) throws(MaildropError) -> StateFile.Loaded<CourierSizeList> {
        try StateFile.load(rootfd: rootfd, name: fileName, maxBytes: maxFileBytes, quick: quick, parse: parse)
    }
}

extension Maildrop {
    /// `uidl_format: courier`. Messages are numbered in Courier's order
    /// (`CourierSizeList.sortInCourierOrder`), so the listing is the one Courier served, number for
    /// number; every message with a record gets Courier's UIDL for it, and a message without
    /// one (delivered after Courier's last session) keeps its `maildir` UIDL: pop3d does not
    /// write Courier's file (it replaces Courier, it does not run beside it), and going back to
    /// Courier would give those messages new UIDLs once.
    ///
    /// No file (a maildrop Courier never served): `maildir` UIDLs. A file that cannot be used:
    /// every message keeps its `maildir` UIDL for this session and `statistics.uidlFallback`
    /// says why (the glue logs it). The file is left alone. Returns whether any UIDL was set from the file.
    func assignCourierUIDLs(rootfd: Int32, quick: Bool) throws(MaildropError) -> Bool {
        CourierSizeList.sortInCourierOrder(&messages)
        let list: CourierSizeList
        switch try CourierSizeList.load(rootfd: rootfd, quick: quick) {
        case .absent:
            // A maildrop Courier never served (a user created since): maildir UIDLs, as
            // for mail Courier never saw. Not a fallback: nothing was lost.
            return false
        case .unusable(let why):
            statistics.uidlFallback = why
            return false
        case .valid(let l): list = l
        }
        var assigned = false
        for i in messages.indices {
            if let uidl = list.uidls[messages[i].uniqueName] {
                messages[i].uid = uidl
                assigned = true
            }
        }
        return assigned
    }
}
