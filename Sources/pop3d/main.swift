import ArgumentParser
import Glibc
import POP3Server

@main
struct Pop3d: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pop3d",
        abstract: "A POP3 server (RFC 1939, 2449, 3206) on one epoll reactor per process.",
        version: pop3dVersion,
        subcommands: [Serve.self, Demo.self, HashPassword.self],
        defaultSubcommand: Serve.self)
}

struct ServeOptions: ParsableArguments {
    @Option(name: .customLong("listen"), help: "Plain POP3 listener HOST:PORT or [V6]:PORT (repeatable).")
    var listen: [String] = []
    @Option(name: .customLong("listen-tls"), help: "Implicit-TLS listener HOST:PORT (repeatable).")
    var listenTLS: [String] = []
    @Option(name: .customLong("passwd-file"), help: "Dovecot-format passwd-file.")
    var passwdFile: String?
    @Option(name: .customLong("mail"), help: "Mail location, e.g. 'maildir:/srv/mail/%u/Maildir'.")
    var mail: String?
    @Option(name: .customLong("trusted-network"), help: "CIDR exempt from login penalties (repeatable).")
    var trustedNetworks: [String] = []
    @Option(name: .customLong("config"), help: "YAML configuration file.")
    var config: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?
    @Option(name: .customLong("idle-timeout"), help: "Seconds of inactivity before autologout (default 600).")
    var idleTimeout: String?
    @Option(name: .customLong("shutdown-timeout"), help: "Seconds a SIGTERM drain waits for busy sessions (default 30).")
    var shutdownTimeout: String?
    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain (repeatable, for SNI).")
    var tlsCert: [String] = []
    @Option(name: .customLong("tls-key"), help: "PEM private key, in the order of --tls-cert.")
    var tlsKey: [String] = []

    /// Flags as configuration keys: they win over the environment and the file.
    var flags: [String: [String]] {
        var f: [String: [String]] = [
            "listen": listen, "listen_tls": listenTLS, "trusted_networks": trustedNetworks,
            "tls_cert": tlsCert, "tls_key": tlsKey,
        ]
        if let passwdFile { f["passwd_file"] = [passwdFile] }
        if let mail { f["mail"] = [mail] }
        if let logLevel { f["log_level"] = [logLevel] }
        if let idleTimeout { f["idle_timeout"] = [idleTimeout] }
        if let shutdownTimeout { f["shutdown_timeout"] = [shutdownTimeout] }
        return f
    }
}

func environment() -> [String: String] {
    var env: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let text = String(cString: entry)
        if let eq = text.firstIndex(of: "=") {
            env[String(text[..<eq])] = String(text[text.index(after: eq)...])
        }
        p += 1
    }
    return env
}

func printError(_ message: String) {
    var bytes = Array(message.utf8)
    bytes.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
}

func fail(_ message: String) -> Never {
    printError("pop3d: \(message)\n")
    Glibc.exit(1)
}

/// Synchronous on purpose: an async `@main` parks the main thread in dispatch_main(), whose
/// signal thread leaves every signal unblocked, so SIGHUP would kill the process (default
/// action) instead of reaching the loop's signalfd, and SIGTERM would skip the drain. Here the
/// loop runs on the main thread, which blocks those signals before any thread exists.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve POP3 (the default).")
    @OptionGroup var options: ServeOptions

    func run() throws {
        blockLoopSignals()
        let config: ServerConfig
        do {
            config = try loadBlocking(flags: options.flags, environment: environment(), configFile: options.config)
        } catch {
            fail("\(error)")
        }
        let logger = bootstrapLogging(level: config.logLevel)
        do {
            let runner = try ServerRunner(config: config, logger: logger)
            Glibc.exit(try runner.run())
        } catch {
            fail("\(error)")
        }
    }
}

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a demo mailbox and serve it on 127.0.0.1:1110.")
    @Option(help: "Folder for the demo passwd-file and Maildir.") var dir = "demo-data"
    @Option(help: "Listen address.") var listen = "127.0.0.1:1110"

    func run() throws {
        blockLoopSignals()
        let layout: DemoSetup.Layout
        do {
            layout = try DemoSetup.prepare(root: absolute(dir))
        } catch {
            fail("\(error)")
        }
        let port = listen.split(separator: ":").last.map(String.init) ?? "1110"
        print("""
        pop3d demo: user 'demo', password 'demo', mail in \(layout.maildir)
        serving on \(listen); stop with Ctrl-C. Try:
          curl pop3://127.0.0.1:\(port)/ -u demo:demo            # LIST
          curl pop3://127.0.0.1:\(port)/1 -u demo:demo           # RETR 1
          python3 -c "import poplib; p=poplib.POP3('127.0.0.1', \(port)); p.user('demo'); p.pass_('demo'); print(p.stat()); p.quit()"
          telnet 127.0.0.1 \(port)    (then: USER demo / PASS demo / LIST / RETR 1 / QUIT)
        """)
        fflush(nil)
        var config = ServerConfig()
        config.listen = [listen]
        config.passwdFile = layout.passwdFile
        config.mail = layout.mailTemplate
        let logger = bootstrapLogging(level: "info")
        do {
            Glibc.exit(try ServerRunner(config: config, logger: logger).run())
        } catch {
            fail("\(error)")
        }
    }

    func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        guard getcwd(&buffer, buffer.count) != nil else { return path }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path
    }
}

struct HashPassword: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash-password",
        abstract: "Read a password on stdin, print a passwd-file secret (like doveadm pw).")
    @Option(help: "SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, MD5-CRYPT, SSHA512, SSHA256, SSHA, SCRAM-SHA-256, PLAIN, ...")
    var scheme = "SHA512-CRYPT"

    func run() throws {
        let interactive = isatty(0) != 0
        if interactive { printError("Password: ") }
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            fail("no password given on standard input")
        }
        do {
            print(try hashPasswordLine(line, scheme: scheme))
        } catch {
            fail("\(error)")
        }
    }
}

/// Blocks the signals the loop reads through its signalfd, in the calling (main) thread,
/// before other threads start: they inherit the mask.
func blockLoopSignals() {
    var set = sigset_t()
    sigemptyset(&set)
    for signo in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, signo) }
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

/// Runs the async configuration loader (swift-configuration) to completion from synchronous
/// code, waiting on a semaphore; the loader runs on the concurrency pool.
func loadBlocking(flags: [String: [String]], environment: [String: String], configFile: String?) throws -> ServerConfig {
    final class Box: @unchecked Sendable {
        let done = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
        var result: Result<ServerConfig, any Error>?
        init() { sem_init(done, 0, 0) }
        deinit { sem_destroy(done); done.deallocate() }
    }
    let box = Box()
    Task {
        do {
            box.result = .success(try await ServerConfig.load(flags: flags, environment: environment, configFile: configFile))
        } catch {
            box.result = .failure(error)
        }
        sem_post(box.done)
    }
    while sem_wait(box.done) != 0 && errno == EINTR {}
    guard let result = box.result else { throw ConfigError("configuration loader did not finish") }
    return try result.get()
}
