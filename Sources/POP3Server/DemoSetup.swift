import Auth
import Glibc
import Maildrop

/// What `pop3d demo` serves: a passwd-file with the user `demo` (password `demo`) and a Maildir
/// with a few messages, laid out as Postfix delivers them (tmp/ then rename into new/).
public enum DemoSetup {
    /// Where `prepare(root:)` put the demo's files.
    public struct Layout: Sendable {
        /// The demo directory (created if missing).
        public let root: String
        /// The passwd-file, `root/passwd`: the user `demo`, password `demo`.
        public let passwdFile: String
        /// The `mail` setting: `maildir:root/%u/Maildir`.
        public let mailTemplate: String
        /// The demo user's Maildir, `root/demo/Maildir`.
        public let maildir: String

        /// The configuration `pop3d demo` serves this layout with: the defaults, except that
        /// `max_connections` is sized to what the descriptor limit can carry
        /// (`ServerRunner.connectionsFitting`), so a newcomer's first start prints no
        /// RLIMIT_NOFILE warning about 50,000 connections a demo never needs. `hardLimit` is
        /// RLIMIT_NOFILE's hard limit (the most the soft one can be raised to without root);
        /// nil when unknown, then the defaults stay.
        public func serverConfig(listen: String, hardLimit: rlim_t? = ServerRunner.descriptorLimits()?.hard) -> ServerConfig {
            var config = ServerConfig()
            config.listen = [listen]
            config.passwdFile = passwdFile
            config.mail = mailTemplate
            if let hardLimit {
                // At least one session: on a host whose limit cannot carry even that, the
                // runner's warning is the truth and should show.
                let fits = max(1, ServerRunner.connectionsFitting(descriptors: hardLimit))
                config.maxConnections = min(config.maxConnections, fits)
                config.maxUnauthenticated = min(config.maxUnauthenticated, config.maxConnections)
                config.maxConnectionsPerIP = min(config.maxConnectionsPerIP, config.maxConnections)
            }
            return config
        }
    }

    /// Creates the demo data under `root` (created if missing). Existing demo mail is kept, so
    /// a second `make demo` shows what the first left behind; messages are added only when the
    /// Maildir is empty.
    public static func prepare(root: String) throws -> Layout {
        try makeDirectory(root)
        let passwd = root + "/passwd"
        try writeFile(passwd, "demo:{PLAIN}demo:1000:1000::\(root)/demo::\n")
        let maildir = root + "/demo/Maildir"
        do {
            // Maildrop's writer (tmp/ then rename into new/, as Postfix delivers).
            var writer = try MaildirWriter(root: maildir)
            if try isEmpty(maildir + "/new") && isEmpty(maildir + "/cur") {
                let now = Int(time(nil))
                for (i, body) in messages.enumerated() {
                    let name = writer.makeUniqueName(seconds: now - 3600 * (messages.count - i), microseconds: i, host: "demo")
                    try writer.deliver(Array(body.utf8), fileName: name)
                }
            }
        } catch let error as MaildropError {
            throw ConfigError("demo: cannot deliver into \(maildir): \(error)")
        }
        return Layout(root: root, passwdFile: passwd, mailTemplate: "maildir:\(root)/%u/Maildir", maildir: maildir)
    }

    static let messages: [String] = [
        """
        From: Postmaster <postmaster@example.org>
        To: demo@example.org
        Subject: Welcome to pop3d
        Date: Thu, 26 Nov 2026 09:00:00 +0000
        Message-ID: <welcome@example.org>

        This mailbox is served by pop3d from a Maildir.
        Try RETR, TOP, UIDL and DELE; deletions happen only after QUIT.

        """,
        """
        From: Alice <alice@example.org>
        To: demo@example.org
        Subject: Dots and line endings
        Date: Thu, 26 Nov 2026 10:00:00 +0000
        Message-ID: <dots@example.org>

        The next line starts with a dot, which POP3 sends dot-stuffed:
        .this line
        and a lone dot below is not the end of the message:
        .
        The end.

        """,
        """
        From: Bob <bob@example.org>
        To: demo@example.org
        Subject: A third message
        Date: Thu, 26 Nov 2026 11:00:00 +0000
        Message-ID: <third@example.org>

        Nothing special here.

        """,
    ]

    static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw ConfigError("demo: cannot create \(path): \(errnoText())")
        }
    }

    static func writeFile(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ConfigError("demo: cannot write \(path): \(errnoText())") }
        defer { close(fd) }
        var bytes = Array(text.utf8)
        let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw ConfigError("demo: short write to \(path): \(errnoText())") }
        bytes.removeAll()
    }

    static func isEmpty(_ dir: String) throws -> Bool {
        guard let d = opendir(dir) else { throw ConfigError("demo: cannot read \(dir): \(errnoText())") }
        defer { closedir(d) }
        while let entry = readdir(d) {
            // The first octet read in place: copying the whole 256-octet d_name reads past
            // the end of glibc's buffer for a short name at its end.
            let first = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: UInt8.self, capacity: 1) { $0.pointee }
            }
            if first != UInt8(ascii: ".") { return false }
        }
        return true
    }
}

func errnoText(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}

/// `pop3d hash-password`: a `{SCHEME}secret` for the passwd-file (pop3d itself imports only
/// POP3Server, so the Auth call is wrapped here).
public func hashPasswordLine(_ password: String, scheme: String) throws -> String {
    do {
        return try Auth.hashPassword(password, scheme: scheme)
    } catch {
        throw ConfigError("hash-password: \(error)")
    }
}
