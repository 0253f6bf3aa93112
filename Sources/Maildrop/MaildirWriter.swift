import Glibc

/// Delivers messages into a Maildir the way Postfix does (write to tmp/,
/// then rename into new/), for tests and for `pop3d demo`. Not meant for
/// production delivery: it does not fsync.
public struct MaildirWriter {
    /// The Maildir's root directory (holding new/, cur/, tmp/).
    public let root: String
    private var counter = 0

    /// Creates `root` and its new/ cur/ tmp/ when missing.
    public init(root: String) throws(MaildropError) {
        self.root = root
        var prefix = ""
        for component in root.split(separator: "/") {
            prefix += "/" + component
            try MaildirWriter.mkdirIfMissing(prefix)
        }
        for sub in ["new", "cur", "tmp"] { try MaildirWriter.mkdirIfMissing(root + "/" + sub) }
    }

    /// A unique name in Dovecot's style, `<seconds>.M<usec>P<pid>Q<n>.<host>`.
    public mutating func makeUniqueName(seconds: Int? = nil, microseconds: Int = 0, host: String = "localhost") -> String {
        counter += 1
        let now = seconds ?? Int(time(nil))
        return "\(now).M\(microseconds)P\(getpid())Q\(counter).\(host)"
    }

    /// Writes `contents` as `fileName` into `folder` (through tmp/) and
    /// returns the final path. `fileName` may carry `,S=`/`,W=` and `:2,` parts.
    @discardableResult
    public func deliver(_ contents: [UInt8], fileName: String, into folder: MessageInfo.Folder = .new) throws(MaildropError) -> String {
        let tmpPath = root + "/tmp/" + fileName
        let finalPath = root + "/" + folder.directoryName + "/" + fileName
        let fd = try Sys.call("open", tmpPath) { open(tmpPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
        do {
            try Sys.writeAll(fd, contents, path: tmpPath)
        } catch {
            Sys.close(fd)
            unlink(tmpPath)
            throw error
        }
        Sys.close(fd)
        _ = try Sys.call("rename", finalPath) { rename(tmpPath, finalPath) }
        return finalPath
    }

    /// Delivers `contents` under a fresh unique name; returns the file name.
    @discardableResult
    public mutating func deliver(_ contents: String, seconds: Int? = nil, microseconds: Int = 0) throws(MaildropError) -> String {
        let name = makeUniqueName(seconds: seconds, microseconds: microseconds)
        try deliver(Array(contents.utf8), fileName: name)
        return name
    }

    private static func mkdirIfMissing(_ path: String) throws(MaildropError) {
        _ = try Sys.call("mkdir", path, unless: EEXIST) { mkdir(path, 0o700) }
    }
}
