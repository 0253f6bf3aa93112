import ArgumentParser
import Glibc
import Reactor

extension Scenario: ExpressibleByArgument {}
extension AuthMethod: ExpressibleByArgument {}
extension TransportChoice: ExpressibleByArgument {}

struct Pop3Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pop3bench",
        abstract: "POP3 load generator: many client sessions on one reactor, every reply checked.",
        discussion: """
            Scenarios: session (login, STAT, LIST, UIDL, RETR all or --sample, optional --dele, QUIT), \
            idle (login, hold --hold seconds, QUIT), noop (--commands NOOPs pipelined --depth deep), \
            retr-big (LIST n, then --commands times RETR n), connect (greeting + QUIT).
            Transports: plain, stls (greeting, STLS, TLS handshake, then the scenario; APOP uses the \
            plaintext greeting's timestamp), tls (implicit TLS: handshake, then greeting). TLS offers \
            ALPN "pop3" and does NOT verify the server's certificate (test servers are self-signed).
            Only loopback targets (127.0.0.0/8, ::1) are accepted. Exit status 1 when any error was \
            counted (unless --allow-errors), 64 on bad usage, 130 when interrupted.
            --json prints one object: scenario, concurrency, elapsed_s, interrupted, \
            sessions{started,ok,failed}, commands{connect,tls,login,stat,list,uidl,retr,dele,noop,quit,total}, \
            retr_octets, throughput{sessions_per_s,commands_per_s,retr_mb_per_s}, \
            errors{connect,greeting,tls,auth,protocol,size_mismatch,uidl_mismatch,timeout,closed,total}, \
            latency_us{<command>|session: {count,p50,p90,p99,p99_9,max}}, first_error. \
            connect = TCP connect + greeting (tls: + handshake); tls = TLS setup, from the TCP connect \
            (tls) or the STLS command (stls) to the end of the handshake; tls errors = STLS refused, \
            handshake failed, or the connection lost during it (tls: a refused connect too).
            --proxy-v1/--proxy-v2 send a PROXY protocol header (HAProxy's send-proxy/send-proxy-v2) \
            as the first bytes of every connection, before TLS with --transport tls, claiming the \
            --proxy-source addresses in turn as the client (ADDR, ADDR:PORT, [V6]:PORT, or an IPv4 \
            range A-B[:PORT]; default 127.0.0.1, or ::1 for an IPv6 target; without a port each \
            connection claims another one from 1024 up). The header's destination is --host:--port. \
            The server must be configured to expect the header (pop3d: proxy_networks).
            """)

    /// Above this many connections one source address runs short of ephemeral ports towards one
    /// server port (Linux default range 32768-60999), so sources are spread automatically.
    static let connectionsPerSourceAddress = 25_000
    /// Most connections in one run (the design target; file descriptors are raised to fit).
    static let maxConcurrency = 50_000

    @Argument(help: "session | idle | noop | retr-big | connect") var scenario: Scenario
    @Option(help: "Server address (loopback only).") var host = "127.0.0.1"
    @Option(help: "Server port.") var port: UInt16 = 110
    @Option(help: "Concurrent connections (slots).") var concurrency = 1
    @Option(help: "Sessions in total (default: one per slot when --duration is absent).") var count: Int?
    @Option(help: "Start sessions during this many seconds.") var duration: Double?
    @Option(help: "New connections per second (default: unlimited).") var ramp: Double?
    @Option(help: "Source addresses, e.g. 127.0.0.1-127.0.0.8 (default: automatic above 25,000 connections).")
    var source: String?
    @Option(help: "Login: user (USER/PASS), apop, plain (AUTH PLAIN).") var auth = AuthMethod.user
    @Option(help: "plain | stls | tls (implicit). TLS: no certificate verification.")
    var transport = TransportChoice.plain
    @Option(help: "User name pattern, e.g. u%04d.") var users: String?
    @Option(help: "Password pattern, e.g. p%04d.") var password: String?
    @Option(help: "Number of users the patterns yield.") var userCount = 1
    @Option(help: "First index the patterns use.") var userFirst = 0
    @Option(help: "Dovecot passwd-file; users with {PLAIN} secrets are used.") var passwdFile: String?
    @Option(help: "session: RETR only K messages spread over the maildrop.") var sample: Int?
    @Flag(help: "session: DELE every message retrieved.") var dele = false
    @Option(help: "idle: seconds to hold each logged-in session.") var hold: Double = 1
    @Option(help: "noop: commands in flight per connection.") var depth = 1
    @Option(help: "noop and retr-big: commands per session.") var commands = 100
    @Option(help: "retr-big: message number.") var message = 1
    @Option(help: "Seconds a server may stay silent before a timeout error.") var timeout: Double = 30
    @Option(help: "Hard limit in seconds on the whole run (default: duration + timeout + 10, or 600).")
    var maxTime: Double?
    @Flag(help: "Send a PROXY protocol v1 (text) header first on every connection.") var proxyV1 = false
    @Flag(help: "Send a PROXY protocol v2 (binary) header first on every connection.") var proxyV2 = false
    @Option(help: "Client address the PROXY header claims: ADDR[:PORT], [V6][:PORT] or IPv4 range A-B[:PORT]; repeatable, taken in turn.")
    var proxySource: [String] = []
    @Flag(help: "--proxy-v2: add PP2_TYPE_SSL saying the client used TLS (like send-proxy-v2-ssl).") var proxySsl = false
    @Flag(help: "--proxy-v2: add a CRC32C TLV.") var proxyCrc = false
    @Flag(help: "Print one JSON object instead of the text summary.") var json = false
    @Flag(help: "No progress line.") var quiet = false
    @Flag(help: "Exit 0 even when errors were counted.") var allowErrors = false

    func run() throws {
        let config = try makeConfig()
        signal(SIGPIPE, SIG_IGN)
        try raiseFileLimit(to: config.concurrency + 64)
        let bench = try Bench(config: config)
        let elapsed = try bench.run()
        let report = Report(config: config, stats: bench.stats, elapsedNanoseconds: elapsed,
                            firstError: bench.firstError, interrupted: bench.interrupted)
        print(json ? report.json() : report.text(), terminator: json ? "\n" : "")
        if bench.interrupted { throw ExitCode(130) }
        if bench.stats.totalErrors > 0 && !allowErrors { throw ExitCode(1) }
    }

    func makeConfig() throws -> BenchConfig {
        let hostName = host == "localhost" ? "127.0.0.1" : host
        guard let target = SocketAddress(ip: hostName, port: port) else {
            throw ValidationError("--host \(host) is not an IP address")
        }
        guard Self.isLoopback(target) else {
            throw ValidationError("--host \(host) is not loopback: pop3bench only targets 127.0.0.0/8 and ::1")
        }
        guard concurrency >= 1, concurrency <= Self.maxConcurrency else {
            throw ValidationError("--concurrency must be 1...\(Self.maxConcurrency)")
        }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let duration, !(duration > 0 && duration <= 86_400) { throw ValidationError("--duration must be in (0, 86400]") }
        if let ramp, !(ramp > 0) { throw ValidationError("--ramp must be positive") }
        guard depth >= 1, depth <= 10_000 else { throw ValidationError("--depth must be 1...10000") }
        guard commands >= 1 else { throw ValidationError("--commands must be at least 1") }
        guard message >= 1 else { throw ValidationError("--message must be at least 1") }
        guard hold >= 0, hold <= 86_400, timeout > 0, timeout <= 86_400 else { throw ValidationError("bad --hold or --timeout") }
        if let sample, sample < 1 { throw ValidationError("--sample must be at least 1") }
        var credentials: [Credential] = []
        if scenario.logsIn {
            if let passwdFile {
                credentials = try Credentials.fromPasswdFile(passwdFile)
            } else if let users, let password {
                credentials = try Credentials.fromPattern(users: users, passwords: password, count: userCount, first: userFirst)
            } else {
                throw ValidationError("\(scenario.rawValue) logs in: give --users and --password, or --passwd-file")
            }
        }
        let sources = try makeSources(target: target)
        let proxy = try makeProxy(target: target)
        let limit = maxTime ?? (duration.map { $0 + timeout + 10 } ?? 600)
        return BenchConfig(
            scenario: scenario, target: target, sources: sources, concurrency: concurrency,
            count: count ?? (duration == nil ? concurrency : nil), duration: duration, ramp: ramp,
            auth: auth, transport: transport, credentials: credentials, sample: sample, dele: dele,
            hold: hold, depth: depth, commandsPerSession: commands, message: message,
            replyTimeoutNanoseconds: UInt64(timeout * 1e9), hardDeadlineNanoseconds: UInt64(limit * 1e9),
            progress: !quiet, proxy: proxy)
    }

    /// The PROXY header settings, or nil without --proxy-v1/--proxy-v2.
    func makeProxy(target: SocketAddress) throws -> ProxySending? {
        guard !(proxyV1 && proxyV2) else { throw ValidationError("--proxy-v1 and --proxy-v2 exclude each other") }
        guard proxyV1 || proxyV2 else {
            if !proxySource.isEmpty || proxySsl || proxyCrc {
                throw ValidationError("--proxy-source, --proxy-ssl and --proxy-crc need --proxy-v1 or --proxy-v2")
            }
            return nil
        }
        if proxyV1 && (proxySsl || proxyCrc) { throw ValidationError("--proxy-ssl and --proxy-crc are v2 TLVs: use --proxy-v2") }
        var sources: [ProxySource]
        do {
            sources = try ProxySending.parseSources(proxySource)
        } catch {
            throw ValidationError(error.description)
        }
        if sources.isEmpty {
            sources = [ProxySource(address: target.family == .ipv4 ? .v4(0x7F00_0001) : .v6(high: 0, low: 1), port: nil)]
        }
        return ProxySending(version: proxyV1 ? .v1 : .v2, sources: sources, ssl: proxySsl, crc: proxyCrc)
    }

    static func isLoopback(_ address: SocketAddress) -> Bool {
        let bytes = address.addressBytes
        switch address.family {
        case .ipv4: return bytes.first == 127
        case .ipv6: return bytes == [UInt8](repeating: 0, count: 15) + [1]
        }
    }

    /// `A` or `A-B` over the last octet of 127.x.y.z; automatic spreading above the per-address budget.
    func makeSources(target: SocketAddress) throws -> [SocketAddress?] {
        if let source {
            guard target.family == .ipv4 else { throw ValidationError("--source needs an IPv4 target") }
            let parts = source.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
            guard parts.count <= 2, let first = SocketAddress(ip: parts[0], port: 0), Self.isLoopback(first) else {
                throw ValidationError("--source \(source): use 127.0.0.A or 127.0.0.A-127.0.0.B")
            }
            guard parts.count == 2 else { return [first] }
            guard let last = SocketAddress(ip: parts[1], port: 0), Self.isLoopback(last),
                  first.addressBytes.prefix(3) == last.addressBytes.prefix(3),
                  let a = first.addressBytes.last, let b = last.addressBytes.last, a <= b
            else { throw ValidationError("--source \(source): both ends in one 127.x.y.0/24, low to high") }
            let prefix = first.addressBytes.prefix(3).map(String.init).joined(separator: ".")
            return (a...b).compactMap { SocketAddress(ip: "\(prefix).\($0)", port: 0) }
        }
        guard target.family == .ipv4, concurrency > Self.connectionsPerSourceAddress else { return [nil] }
        let needed = (concurrency + Self.connectionsPerSourceAddress - 1) / Self.connectionsPerSourceAddress
        return (1...needed).compactMap { SocketAddress(ip: "127.0.0.\($0)", port: 0) }
    }

    /// Each connection is a descriptor: raise RLIMIT_NOFILE's soft limit towards the hard one.
    func raiseFileLimit(to wanted: Int) throws {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur >= rlim_t(wanted) { return }
        limit.rlim_cur = min(limit.rlim_max, rlim_t(wanted))
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        if limit.rlim_cur < rlim_t(wanted) {
            throw ValidationError("need \(wanted) file descriptors, the hard limit is \(limit.rlim_max)")
        }
    }
}
