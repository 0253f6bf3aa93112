import CShim
import Glibc
import Maildrop
import POP3
import Configuration
import Reactor
import SystemPackage

extension ServerConfig {
    /// The configuration keys, as written in the YAML file. The environment variable of a key
    /// is `POP3D_` followed by the key in upper case (`idle_timeout` → `POP3D_IDLE_TIMEOUT`);
    /// lists in the environment are comma-separated.
    public static let keys: [String] = [
        "listen", "listen_tls", "passwd_file", "mail", "trusted_networks", "log_level", "user",
        "idle_timeout", "shutdown_timeout", "max_connections", "max_connections_per_ip",
        "max_unauthenticated", "max_output_bytes", "max_bad_commands", "max_auth_failures",
        "login_delay", "expire", "implementation", "reuse_port", "auth_workers",
        "disable_plaintext_auth", "tls_cert", "tls_key", "tls_min_version",
        "tls_handshake_timeout", "hostname", "auth_mechanisms", "login_timeout",
        "max_unauthenticated_output_bytes", "tls_handshakes_per_turn", "loop_lag_warning",
        "auth_max_queued_per_ip",
        "maildir_allow_root_symlink",
        "proxy_networks", "proxy_header_timeout",
        "workers", "worker_watchdog_timeout", "worker_start_limit_burst", "worker_start_limit_interval",
        "metrics_listen", "uidl_format",
        "pop3_enable_last", "pop3_client_workarounds",
        "passdb", "sql_connect", "sql_password_query", "sql_connections", "sql_query_timeout",
        "auth_cache_size", "auth_cache_ttl", "auth_cache_negative_ttl",
    ]

    /// Builds the configuration from flags (which win), `POP3D_*` environment variables and
    /// the YAML file, in that order, and validates every value.
    ///
    /// Values are read as strings and converted here rather than by the library, because a
    /// value that does not convert must be a start-up error naming the key, not a silent
    /// fallback to the default.
    public static func load(
        flags: [String: [String]],
        environment: [String: String],
        configFile: String?
    ) async throws -> ServerConfig {
        var providers: [any ConfigProvider] = []
        var flagValues: [AbsoluteConfigKey: ConfigValue] = [:]
        for (key, values) in flags where !values.isEmpty {
            flagValues[AbsoluteConfigKey([key])] = ConfigValue(.stringArray(values), isSecret: false)
        }
        providers.append(InMemoryProvider(name: "flags", values: flagValues))
        let env = environment.filter { $0.key.hasPrefix("POP3D_") }
        providers.append(EnvironmentVariablesProvider(environmentVariables: env).prefixKeys(with: "pop3d"))
        if let configFile {
            try checkConfigFile(configFile)
            do {
                let file = try await FileProvider<YAMLSnapshot>(filePath: FilePath(configFile))
                providers.append(file)
            } catch {
                throw ConfigError("cannot read configuration file \(configFile): \(error)")
            }
        }
        let reader = ConfigReader(providers: providers)
        return try ServerConfig(reading: Values(reader: reader))
    }

    init(reading v: Values) throws {
        self.init()
        listen = v.list("listen") ?? listen
        listenTLS = v.list("listen_tls") ?? listenTLS
        passwdFile = v.string("passwd_file") ?? passwdFile
        mail = v.string("mail") ?? mail
        trustedNetworks = v.list("trusted_networks") ?? trustedNetworks
        logLevel = v.string("log_level") ?? logLevel
        user = v.string("user") ?? user
        idleTimeoutSeconds = try v.int("idle_timeout", min: 1, max: 86_400) ?? idleTimeoutSeconds
        shutdownTimeoutSeconds = try v.int("shutdown_timeout", min: 0, max: 3_600) ?? shutdownTimeoutSeconds
        maxConnections = try v.int("max_connections", min: 1, max: 1_000_000) ?? maxConnections
        maxConnectionsPerIP = try v.int("max_connections_per_ip", min: 1, max: 1_000_000) ?? maxConnectionsPerIP
        maxUnauthenticated = try v.int("max_unauthenticated", min: 1, max: 1_000_000) ?? maxUnauthenticated
        maxOutputBytes = try v.int("max_output_bytes", min: 4_096, max: 64 << 20) ?? maxOutputBytes
        maxBadCommands = try v.int("max_bad_commands", min: 1, max: 1_000) ?? maxBadCommands
        maxAuthFailures = try v.int("max_auth_failures", min: 1, max: 100) ?? maxAuthFailures
        loginDelaySeconds = try v.int("login_delay", min: 0, max: 86_400) ?? loginDelaySeconds
        expire = try v.string("expire").map(Self.validExpire) ?? expire
        announceImplementation = try v.bool("implementation") ?? announceImplementation
        reusePort = try v.bool("reuse_port") ?? reusePort
        authWorkers = try v.int("auth_workers", min: 1, max: 64) ?? authWorkers
        disablePlaintextAuth = try v.bool("disable_plaintext_auth") ?? disablePlaintextAuth
        tlsCert = v.list("tls_cert") ?? tlsCert
        tlsKey = v.list("tls_key") ?? tlsKey
        tlsMinVersion = v.string("tls_min_version") ?? tlsMinVersion
        tlsHandshakeTimeoutSeconds = try v.int("tls_handshake_timeout", min: 1, max: 600) ?? tlsHandshakeTimeoutSeconds
        hostname = v.string("hostname") ?? hostname
        authMechanisms = try v.list("auth_mechanisms").map(AuthMechanism.parse) ?? authMechanisms
        loginTimeoutSeconds = try v.int("login_timeout", min: 1, max: 86_400) ?? loginTimeoutSeconds
        maxUnauthenticatedOutputBytes = try v.int("max_unauthenticated_output_bytes", min: 1_024, max: 64 << 20)
            ?? maxUnauthenticatedOutputBytes
        tlsHandshakesPerTurn = try v.int("tls_handshakes_per_turn", min: 1, max: 1_024) ?? tlsHandshakesPerTurn
        loopLagWarningMilliseconds = try v.int("loop_lag_warning", min: 0, max: 60_000) ?? loopLagWarningMilliseconds
        authMaxQueuedPerIP = try v.int("auth_max_queued_per_ip", min: 1, max: 65_536) ?? authMaxQueuedPerIP
        maildirAllowRootSymlink = try v.bool("maildir_allow_root_symlink") ?? maildirAllowRootSymlink
        proxyNetworks = v.list("proxy_networks") ?? proxyNetworks
        proxyHeaderTimeoutSeconds = try v.int("proxy_header_timeout", min: 1, max: 600) ?? proxyHeaderTimeoutSeconds
        if let text = v.string("workers"), text.trimmingSpaces().lowercased() == "auto" {
            workers = min(Self.usableCPUs(), Scoreboard.maxWorkers)
        } else if let text = v.string("workers"), Int(text.trimmingSpaces()) == nil {
            throw ConfigError("workers: '\(text)' is neither a whole number nor auto")
        } else {
            workers = try v.int("workers", min: 1, max: Scoreboard.maxWorkers) ?? workers
        }
        workerWatchdogTimeoutSeconds = try v.int("worker_watchdog_timeout", min: 1, max: 3_600) ?? workerWatchdogTimeoutSeconds
        workerStartLimitBurst = try v.int("worker_start_limit_burst", min: 1, max: 1_000) ?? workerStartLimitBurst
        workerStartLimitIntervalSeconds = try v.int("worker_start_limit_interval", min: 1, max: 3_600)
            ?? workerStartLimitIntervalSeconds
        metricsListen = try v.string("metrics_listen").flatMap(Self.validMetricsListen) ?? metricsListen
        if let text = v.string("uidl_format") {
            guard let format = UIDLFormat(rawValue: text.trimmingSpaces().lowercased()) else {
                throw ConfigError("uidl_format: '\(text)' is not one of \(UIDLFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            uidlFormat = format
        }
        pop3EnableLast = try v.bool("pop3_enable_last") ?? pop3EnableLast
        if let words = v.list("pop3_client_workarounds") {
            switch ClientWorkarounds.parse(words) {
            case .success(let set): pop3ClientWorkarounds = set
            case .failure(let unknown):
                throw ConfigError("pop3_client_workarounds: '\(unknown.name)' is not one of \(ClientWorkarounds.names.map(\.name).joined(separator: ", "))")
            }
        }
        if let text = v.string("passdb") {
            guard let value = PassDB(rawValue: text.trimmingSpaces().lowercased()) else {
                throw ConfigError("passdb: '\(text)' is not one of \(PassDB.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            passdb = value
        }
        sqlConnect = v.string("sql_connect") ?? sqlConnect
        sqlPasswordQuery = v.string("sql_password_query") ?? sqlPasswordQuery
        sqlConnections = try v.int("sql_connections", min: 1, max: 64) ?? sqlConnections
        sqlQueryTimeoutSeconds = try v.int("sql_query_timeout", min: 1, max: 300) ?? sqlQueryTimeoutSeconds
        authCacheSize = try v.int("auth_cache_size", min: 0, max: 10_000_000) ?? authCacheSize
        authCacheTTLSeconds = try v.int("auth_cache_ttl", min: 1, max: 31_536_000) ?? authCacheTTLSeconds
        authCacheNegativeTTLSeconds = try v.int("auth_cache_negative_ttl", min: 0, max: 31_536_000)
            ?? authCacheNegativeTTLSeconds
        try validate()
    }

    /// Cross-field checks that a single key's parser cannot make.
    public func validate() throws {
        let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
        guard levels.contains(logLevel) else {
            throw ConfigError("log_level: '\(logLevel)' is not one of \(levels.joined(separator: ", "))")
        }
        guard tlsCert.count == tlsKey.count else {
            throw ConfigError("tls_cert and tls_key: \(tlsCert.count) certificate(s) but \(tlsKey.count) key(s); give them in pairs")
        }
        guard tlsMinVersion == "TLSv1.2" || tlsMinVersion == "TLSv1.3" else {
            throw ConfigError("tls_min_version: '\(tlsMinVersion)' is not TLSv1.2 or TLSv1.3")
        }
        if !listenTLS.isEmpty && tlsCert.isEmpty {
            throw ConfigError("listen_tls needs tls_cert and tls_key")
        }
        if passdb == .sql {
            // Checked here too, so that a master with workers refuses a bad value at start.
            _ = try checkedConnectInfo()
            guard let query = sqlPasswordQuery, !query.isEmpty else {
                throw ConfigError("sql_password_query: required with passdb: sql")
            }
        }
    }

    /// The largest configuration file read (the example is 2 KiB): a larger one is a mistake
    /// (a log or a mailbox named by `--config`), refused before it is parsed.
    public static let maxConfigFileBytes = 1 << 20

    /// A configuration file must be a regular file of at most `maxConfigFileBytes`: a FIFO
    /// would block the reader (on SIGHUP, a reload thread for good), a device has no end.
    static func checkConfigFile(_ path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw ConfigError("cannot read configuration file \(path): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw ConfigError("configuration file \(path) is not a regular file")
        }
        guard st.st_size <= maxConfigFileBytes else {
            throw ConfigError("configuration file \(path) is \(st.st_size) octets; at most \(maxConfigFileBytes) are read")
        }
    }

    /// `workers: auto`: the CPUs this process may run on (sched_getaffinity, so taskset and
    /// systemd's CPUAffinity= count), else the online CPUs.
    static func usableCPUs() -> Int { Int(cshim_usable_cpus()) }

    /// `metrics_listen`: an empty value (or `off`) is off; anything else must be an address
    /// the listener can bind, checked here so a typo stops the start instead of leaving the
    /// host without metrics.
    static func validMetricsListen(_ s: String) throws -> String? {
        let text = s.trimmingSpaces()
        if text.isEmpty || text.lowercased() == "off" { return nil }
        guard SocketAddress(parsing: text) != nil else {
            throw ConfigError("metrics_listen: '\(s)' is not HOST:PORT or [IPV6]:PORT (an address, not a name)")
        }
        return text
    }

    static func validExpire(_ s: String) throws -> String {
        if s == "NEVER" { return s }
        if let days = Int(s), days >= 0, days <= 36_500 { return String(days) }
        throw ConfigError("expire: '\(s)' is not NEVER or a number of days")
    }

    /// Typed access to the merged providers, converting strings with errors that name the key.
    struct Values {
        let reader: ConfigReader

        func string(_ key: String) -> String? {
            if let s = reader.string(forKey: ConfigKey([key])) { return s }
            return reader.stringArray(forKey: ConfigKey([key]))?.last
        }

        func list(_ key: String) -> [String]? {
            if let a = reader.stringArray(forKey: ConfigKey([key])) { return a.filter { !$0.isEmpty } }
            guard let s = reader.string(forKey: ConfigKey([key])) else { return nil }
            return s.split(separator: ",").map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
        }

        func int(_ key: String, min: Int, max: Int) throws -> Int? {
            guard let s = string(key) else { return nil }
            guard let n = Int(s.trimmingSpaces()) else {
                throw ConfigError("\(key): '\(s)' is not a whole number")
            }
            guard n >= min && n <= max else {
                throw ConfigError("\(key): \(n) is outside \(min)...\(max)")
            }
            return n
        }

        func bool(_ key: String) throws -> Bool? {
            guard let s = string(key) else { return nil }
            switch s.trimmingSpaces().lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            default: throw ConfigError("\(key): '\(s)' is not true or false")
            }
        }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}

import Dispatch
import Synchronization

extension ServerConfig {
    /// `load` for synchronous callers. pop3d's commands are synchronous on purpose: the main
    /// thread blocks SIGTERM/SIGINT/SIGHUP before any other thread exists, and the reactor then
    /// runs on that same thread, so no thread without the mask is ever created before it.
    public static func loadBlocking(
        flags: [String: [String]], environment: [String: String], configFile: String?
    ) throws -> ServerConfig {
        let box = Mutex<Result<ServerConfig, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let result: Result<ServerConfig, any Error>
            do {
                result = .success(try await load(flags: flags, environment: environment, configFile: configFile))
            } catch {
                result = .failure(error)
            }
            box.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try box.withLock { $0! }.get()
    }
}
