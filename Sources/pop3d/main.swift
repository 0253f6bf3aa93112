import ArgumentParser
import POP3Server

struct POP3D: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pop3d",
        abstract: "POP3 server (RFC 1939) on one epoll reactor, with systemd socket activation.",
        subcommands: [Serve.self],
        defaultSubcommand: Serve.self)
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Accept POP3 connections until SIGTERM.")

    @Option(name: .long, help: "Address to listen on, HOST:PORT or [IPv6]:PORT (repeatable). Ignored under socket activation.")
    var listen: [String] = []

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Seconds busy sessions get to finish after SIGTERM.")
    var shutdownTimeout: Double = 30

    func validate() throws {
        guard ServerLogging.level(named: logLevel) != nil else {
            throw ValidationError("--log-level '\(logLevel)': expected trace, debug, info, notice, warning, error or critical")
        }
        guard shutdownTimeout.isFinite, shutdownTimeout >= 0 else {
            throw ValidationError("--shutdown-timeout must be a number of seconds >= 0")
        }
    }

    func run() throws {
        let logger = ServerLogging.bootstrap(levelName: logLevel)
        do {
            try SkeletonServer.serve(listen: listen, shutdownTimeoutSeconds: shutdownTimeout, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
    }
}

POP3D.main()
