import Maildrop

extension POP3Connection {
    /// Logs what a login's UIDL assignment could not do (issue 14): a fallback changes the
    /// UIDLs clients see, so it is a warning at every login until the file is fixed.
    func logUIDLState(_ stats: OpenStatistics) {
        // `uidlFallback` is logged by `maildropOpened`, with the format's name.
        if let why = stats.importedUIDLsIgnored {
            service.logger.warning("imported UIDLs (\(ImportedUIDLs.fileName)) not used: \(why)", metadata: metadata)
        }
        if let error = stats.importedUIDLsWriteError {
            service.logger.warning("\(ImportedUIDLs.fileName) not rewritten without gone messages: \(error)", metadata: metadata)
        }
        if stats.uidlsRepaired > 0 || stats.uidlsRenamed > 0 {
            service.logger.notice(
                "UIDLs made RFC 1939 compliant: \(stats.uidlsRepaired) hashed, \(stats.uidlsRenamed) duplicates renamed",
                metadata: metadata)
        }
    }
}
