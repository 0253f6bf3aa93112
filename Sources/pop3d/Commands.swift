import ArgumentParser
import Glibc
import POP3Server

struct Pop3d: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pop3d",
        abstract: "A POP3 server (RFC 1939, 2449, 3206) on one epoll reactor per process.",
        version: pop3dVersion,
        subcommands: [Serve.self, Demo.self, HashPassword.self, UIDL.self],
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
    @Option(name: .customLong("proxy-network"), help: "CIDR of a load balancer that sends a PROXY protocol header (repeatable).")
    var proxyNetworks: [String] = []
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
    @Option(name: .customLong("workers"), help: "Worker processes under one master: a number or 'auto' (one per usable CPU; default 1).")
    var workers: String?
    @Option(name: .customLong("metrics-listen"), help: "Serve Prometheus metrics (GET /metrics) on HOST:PORT or [V6]:PORT (default off).")
    var metricsListen: String?
    @Option(name: .customLong("passdb"), help: "Where users come from: passwd-file (default) or sql.")
    var passdb: String?
    @Option(name: .customLong("sql-connect"), help: "passdb sql: libpq connection string, e.g. 'host=/run/postgresql dbname=mail user=pop3d'.")
    var sqlConnect: String?
    @Option(name: .customLong("sql-password-query"), help: "passdb sql: query with $1 user, $2 local part, $3 domain, returning password [, home, mail].")
    var sqlPasswordQuery: String?
    @Option(name: .customLong("sql-connections"), help: "passdb sql: connections per process (default 2).")
    var sqlConnections: String?
    @Option(name: .customLong("sql-query-timeout"), help: "passdb sql: seconds before a query is abandoned (default 5).")
    var sqlQueryTimeout: String?
    @Option(name: .customLong("auth-cache-size"), help: "Users whose database answer is cached per process (default 100000, 0 = off).")
    var authCacheSize: String?
    @Option(name: .customLong("auth-cache-ttl"), help: "Seconds a cached user is trusted (default 3600).")
    var authCacheTTL: String?
    @Option(name: .customLong("auth-cache-negative-ttl"), help: "Seconds an unknown user is cached (default 600).")
    var authCacheNegativeTTL: String?

    /// Flags as configuration keys: they win over the environment and the file.
    var flags: [String: [String]] {
        var f: [String: [String]] = [
            "listen": listen, "listen_tls": listenTLS, "trusted_networks": trustedNetworks,
            "tls_cert": tlsCert, "tls_key": tlsKey, "proxy_networks": proxyNetworks,
        ]
        if let passwdFile { f["passwd_file"] = [passwdFile] }
        if let mail { f["mail"] = [mail] }
        if let logLevel { f["log_level"] = [logLevel] }
        if let idleTimeout { f["idle_timeout"] = [idleTimeout] }
        if let shutdownTimeout { f["shutdown_timeout"] = [shutdownTimeout] }
        if let workers { f["workers"] = [workers] }
        if let metricsListen { f["metrics_listen"] = [metricsListen] }
        if let passdb { f["passdb"] = [passdb] }
        if let sqlConnect { f["sql_connect"] = [sqlConnect] }
        if let sqlPasswordQuery { f["sql_password_query"] = [sqlPasswordQuery] }
        if let sqlConnections { f["sql_connections"] = [sqlConnections] }
        if let sqlQueryTimeout { f["sql_query_timeout"] = [sqlQueryTimeout] }
        if let authCacheSize { f["auth_cache_size"] = [authCacheSize] }
        if let authCacheTTL { f["auth_cache_ttl"] = [authCacheTTL] }
        if let authCacheNegativeTTL { f["auth_cache_negative_ttl"] = [authCacheNegativeTTL] }
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
    // Start-up errors quote file contents and paths: escaped like log lines (LogEscaping).
    printError("pop3d: \(LogEscaping.text(message))\n")
    Glibc.exit(1)
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve POP3 (the default).")
    @OptionGroup var options: ServeOptions

    func run() throws {
        let flags = options.flags
        let env = environment()
        let configFile = options.config
        // The same sources again on SIGHUP: flags and environment as at start, the file anew.
        let source: @Sendable () throws -> ServerConfig = {
            try ServerConfig.loadBlocking(flags: flags, environment: env, configFile: configFile)
        }
        let config: ServerConfig
        do {
            config = try source()
        } catch {
            fail("\(error)")
        }
        do {
            // A worker of a master (the master set the variable), a master (workers > 1),
            // or the single process of old.
            if let worker = try WorkerContext.fromEnvironment() {
                let logger = bootstrapLogging(level: config.logLevel, worker: worker.id)
                do {
                    Glibc.exit(try ServerRunner(config: config, logger: logger, worker: worker, configSource: source).run())
                } catch {
                    // The master logs the exit; this line says why, and whose it is.
                    fail("worker \(worker.id): \(error)")
                }
            }
            let logger = bootstrapLogging(level: config.logLevel)
            if config.workers > 1 {
                Glibc.exit(try WorkerMaster(config: config, logger: logger).run())
            }
            Glibc.exit(try ServerRunner(config: config, logger: logger, configSource: source).run())
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
        let config = layout.serverConfig(listen: listen)
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
