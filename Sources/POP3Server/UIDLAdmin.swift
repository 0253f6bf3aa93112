import Maildrop

/// The `pop3d uidl` subcommands' work (issue 14), as text for the command line: the
/// executable imports only this module (ARCHITECTURE.md's module table).
public enum UIDLAdmin {
    /// The `--from` values of `pop3d uidl import`.
    public static let sourceNames = UIDLImportSource.allCases.map(\.rawValue)

    /// `pop3d uidl import --from SOURCE MAILDIR...`: each Maildir on its own, all or nothing
    /// (`Maildrop.importUIDLs`). Returns a line per Maildir for standard output and one per
    /// failed Maildir for standard error.
    public static func importUIDLs(maildirs: [String], from source: String, allowRootSymlink: Bool) -> (lines: [String], errors: [String]) {
        guard let from = UIDLImportSource(rawValue: source) else {
            return ([], ["--from \(source): not one of \(sourceNames.joined(separator: ", "))"])
        }
        var lines: [String] = []
        var errors: [String] = []
        for path in maildirs {
            do {
                let r = try Maildrop.importUIDLs(path: path, from: from, allowRootSymlink: allowRootSymlink)
                var line = "\(path): \(r.imported) of \(r.messages) messages keep their \(from.rawValue) UIDL"
                if r.added != r.imported { line += " (\(r.added) new)" }
                if r.notInSource > 0 { line += ", \(r.notInSource) not in the source keep the format's" }
                if r.renamedDuplicates > 0 { line += ", \(r.renamedDuplicates) duplicates renamed" }
                if r.pruned > 0 { line += ", \(r.pruned) entries of gone messages dropped" }
                line += r.written ? "; \(ImportedUIDLs.fileName) written" : "; \(ImportedUIDLs.fileName) unchanged"
                lines.append(line)
            } catch {
                errors.append(error.description)
            }
        }
        return (lines, errors)
    }

    /// `pop3d uidl check MAILDIR`: a header, notes, then one tab-separated row per message:
    /// number, LIST size, the UIDL served now, where it comes from, and what `maildir`,
    /// `courier`, `dovecot` (and `uw`, `cyrus` are the same data), `X-UIDL:` and `pop3d.uidls`
    /// give (`-`: nothing).
    public static func check(maildir: String, config: ServerConfig) -> Result<String, UIDLStateError> {
        let inspection: UIDLInspection
        do {
            inspection = try Maildrop.inspectUIDLs(
                path: maildir, format: config.uidlFormat, allowRootSymlink: config.maildirAllowRootSymlink)
        } catch {
            return .failure(error)
        }
        var out = "\(inspection.path): uidl_format \(inspection.format.rawValue), \(inspection.rows.count) messages\n"
        for note in inspection.notes { out += "note: \(LogEscaping.text(note))\n" }
        out += "#\tsize\tserved\tfrom\tmaildir\tcourier\tdovecot\tx-uidl\timported\n"
        for r in inspection.rows {
            let cells = [String(r.number), String(r.size), r.served, r.servedFrom, r.maildir,
                         r.courier ?? "-", r.dovecot ?? "-", r.xUIDL ?? "-", r.imported ?? "-"]
            out += cells.joined(separator: "\t") + "\n"
        }
        return .success(out)
    }
}
