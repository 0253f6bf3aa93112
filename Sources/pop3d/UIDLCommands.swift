import ArgumentParser
import Glibc
import POP3Server

/// `pop3d uidl`: moving UIDLs from another POP3 server (issue 14; README "Migrating from
/// Dovecot or Courier").
struct UIDL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uidl",
        abstract: "Import the UIDLs another POP3 server served, or show the UIDLs of a Maildir.",
        subcommands: [UIDLImport.self, UIDLCheck.self])
}

struct UIDLImport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Record each message's current UIDL in pop3d.uidls, kept whatever uidl_format says.",
        discussion: """
            Each MAILDIR is locked (pop3d.lock) and imported all or nothing: a missing or \
            broken source, a UIDL that breaks RFC 1939, or a disagreement with an earlier import \
            is an error and leaves it unchanged. The exit status is 1 when any MAILDIR failed.
            """)
    @Option(name: .customLong("from"), help: "dovecot, courier or x-uidl.")
    var from: String
    @Flag(name: .customLong("allow-root-symlink"), help: "A MAILDIR may itself be a symbolic link (maildir_allow_root_symlink).")
    var allowRootSymlink = false
    @Argument(help: "Maildir folders (absolute paths).")
    var maildirs: [String]

    func validate() throws {
        guard UIDLAdmin.sourceNames.contains(from) else {
            throw ValidationError("--from must be one of \(UIDLAdmin.sourceNames.joined(separator: ", "))")
        }
        guard !maildirs.isEmpty else { throw ValidationError("give at least one MAILDIR") }
    }

    func run() throws {
        let (lines, errors) = UIDLAdmin.importUIDLs(
            maildirs: maildirs.map(absolutePath), from: from, allowRootSymlink: allowRootSymlink)
        for line in lines { print(line) }
        fflush(nil)
        for error in errors { printError("pop3d: \(LogEscaping.text(error))\n") }
        if !errors.isEmpty { Glibc.exit(1) }
    }
}

struct UIDLCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Print, per message, the UIDL each format gives and the one pop3d serves now.",
        discussion: """
            uidl_format comes from --uidl-format, POP3D_UIDL_FORMAT or the --config file, as \
            for serve. The maildrop is locked while it is read (a session holding it is an error).
            """)
    @Option(name: .customLong("uidl-format"), help: "maildir, dovecot, courier, uw or cyrus (default: the configuration's).")
    var uidlFormat: String?
    @Option(name: .customLong("config"), help: "YAML configuration file.")
    var config: String?
    @Argument(help: "A Maildir folder.")
    var maildir: String

    func run() throws {
        var flags: [String: [String]] = [:]
        if let uidlFormat { flags["uidl_format"] = [uidlFormat] }
        let serverConfig: ServerConfig
        do {
            serverConfig = try ServerConfig.loadBlocking(flags: flags, environment: environment(), configFile: config)
        } catch {
            fail("\(error)")
        }
        switch UIDLAdmin.check(maildir: absolutePath(maildir), config: serverConfig) {
        case .success(let text):
            print(text, terminator: "")
        case .failure(let error):
            fail(error.description)
        }
    }
}

/// A relative MAILDIR is taken from the current directory (the maildrop code wants absolute paths).
func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
    guard getcwd(&buffer, buffer.count) != nil else { return path }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path
}
