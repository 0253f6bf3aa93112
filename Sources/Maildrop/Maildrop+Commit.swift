import Glibc

extension Maildrop {
    /// Removes exactly the messages at `indices` (0-based) in the UPDATE state
    /// (RFC 1939 §6). A file renamed since login is found again by its unique
    /// name; one that is already gone counts as deleted. Failures leave the
    /// message in place and are counted; mail delivered after login is never
    /// looked at. Indices out of range or repeated are ignored.
    ///
    /// Cost: one `unlinkat` per message, plus one listing of cur/ and new/ for all the messages
    /// renamed since login together (another round only for those renamed again meanwhile, at
    /// most `commitListingRounds`), never one listing per message: 5,000 messages marked read
    /// by an IMAP client cost one scan, not 5,000. It can still take long for a large maildrop
    /// (an unlink is a journal write), so the glue runs it on a storage worker.
    public func commit(deleting indices: [Int]) -> CommitResult {
        var result = CommitResult(deleted: 0, failed: 0, firstError: nil)
        func fail(_ error: MaildropError, _ index: Int) {
            result.failed += 1
            let (sum, overflow) = result.failedOctets.addingReportingOverflow(max(0, messages[index].size))
            result.failedOctets = overflow ? Int.max : sum
            if result.firstError == nil { result.firstError = error }
        }
        var done = Set<Int>()
        var renamed: [Int] = []
        for i in indices where messages.indices.contains(i) && done.insert(i).inserted {
            do {
                if try unlink(messages[i].folder, messages[i].fileName) {
                    result.deleted += 1
                } else {
                    renamed.append(i)
                }
            } catch {
                fail(error, i)
            }
        }
        var round = 0
        while !renamed.isEmpty {
            round += 1
            let now: [String: (folder: MessageInfo.Folder, fileName: String)]
            do {
                now = try locate(uniqueNames: Set(renamed.map { messages[$0].uniqueName }))
            } catch {
                for i in renamed { fail(error, i) }
                break
            }
            var again: [Int] = []
            for i in renamed {
                // Not in cur/ nor new/ any more: another program removed it, as asked.
                guard let place = now[messages[i].uniqueName] else { result.deleted += 1; continue }
                do {
                    if try unlink(place.folder, place.fileName) {
                        result.deleted += 1
                    } else if round < Maildrop.commitListingRounds {
                        again.append(i)
                    } else {
                        fail(.temporary("unlinkat(\(filePath(place.folder, place.fileName))): renamed again by another program while being removed"), i)
                    }
                } catch {
                    fail(error, i)
                }
            }
            renamed = again
        }
        return result
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
