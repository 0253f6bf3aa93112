import Glibc

extension Maildrop {
    /// Removes exactly the messages at `indices` (0-based) in the UPDATE state
    /// (RFC 1939 §6). A file renamed since login is found again by its unique
    /// name; one that is already gone counts as deleted. Failures leave the
    /// message in place and are counted; mail delivered after login is never
    /// looked at. Indices out of range or repeated are ignored.
    public func commit(deleting indices: [Int]) -> CommitResult {
        var result = CommitResult(deleted: 0, failed: 0, firstError: nil)
        var done = Set<Int>()
        for i in indices where messages.indices.contains(i) && done.insert(i).inserted {
            do {
                try remove(i)
                result.deleted += 1
            } catch {
                result.failed += 1
                if result.firstError == nil { result.firstError = error }
            }
        }
        return result
    }

    private func remove(_ i: Int) throws(MaildropError) {
        let info = messages[i]
        if try unlink(info.folder, info.fileName) { return }
        guard let now = try locate(uniqueName: info.uniqueName) else { return }  // already gone
        if try unlink(now.folder, now.fileName) { return }
        // Renamed once more between our readdir and unlink: one more look.
        guard let again = try locate(uniqueName: info.uniqueName) else { return }
        _ = try unlink(again.folder, again.fileName)
    }

    /// true when removed, false when the name no longer exists.
    private func unlink(_ folder: MessageInfo.Folder, _ name: String) throws(MaildropError) -> Bool {
        let dirfd = try directoryFD(folder)
        switch try Sys.callOrMissing("unlinkat", filePath(folder, name), { unlinkat(dirfd, name, 0) }) {
        case .ok: return true
        case .missing: return false
        }
    }
}
