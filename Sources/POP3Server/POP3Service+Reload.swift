import Auth
import Logging
import Reactor

/// SIGHUP: the passwd-file parsed off the loop and swapped in, the TLS certificates rebuilt.
extension POP3Service {
    /// SIGHUP: reads the passwd-file and certificates again; a broken one keeps the old.
    /// `completion` runs on the loop once the new passwd-file is in use (or was refused):
    /// the READY=1 after RELOADING=1 waits for it (a master: for every worker's).
    public func reload(completion: (() -> Void)? = nil) {
        if let completion { reloadCompletions.append(completion) }
        reloadPasswdFile()
        if !config.tlsCert.isEmpty {
            do {
                tls = try TLSState(config)
                logger.info("TLS certificates reloaded")
            } catch {
                logger.error("TLS certificate reload failed, keeping the old ones: \(error)")
            }
        }
    }

    /// Parses the passwd-file on `reloadPool` (a million lines take seconds: never on the
    /// loop); the loop swaps the new table in when it is done. A file that cannot be read, is
    /// not a regular file (a FIFO would block) or has no valid user keeps the old table, and
    /// the log says why. A SIGHUP during a parse is coalesced into one more parse after it.
    func reloadPasswdFile() {
        guard let path = config.passwdFile else { return finishReload() }
        if passwdReloadRunning {
            passwdReloadAgain = true
            logger.info("passwd-file reload already running: another follows it", metadata: ["path": "\(path)"])
            return
        }
        passwdReloadRunning = true
        let mechanisms = config.authMechanisms
        let submitted = reloadPool.submit({ PasswdLoad(path: path, mechanisms: mechanisms) }) { [weak self] loaded in
            self?.passwdLoaded(loaded, path: path)
        }
        if case .queued = submitted {} else {
            passwdReloadRunning = false
            logger.error("passwd-file reload could not start (\(submitted)), keeping the old one")
            finishReload()
        }
    }

    /// Runs the completions of every reload asked for so far (none is left waiting).
    func finishReload() {
        let waiting = reloadCompletions
        reloadCompletions = []
        for completion in waiting { completion() }
    }

    func passwdLoaded(_ loaded: PasswdLoad, path: String) {
        passwdReloadRunning = false
        switch loaded.result {
        case .success(let (file, diagnostics)):
            Self.logPasswdDiagnostics(diagnostics, logger: logger)
            if file.count == 0 {
                logger.error("passwd-file reload: no valid user in the new file, keeping the old one",
                             metadata: ["path": "\(path)", "users": "\(passwd.count)"])
            } else {
                passwd = file
                logger.info("passwd-file reloaded", metadata: ["path": "\(path)", "users": "\(file.count)"])
                for line in loaded.mechanismWarnings { logger.warning("\(line)") }
            }
        case .failure(let error):
            logger.error("passwd-file reload failed, keeping the old one: \(error)")
        }
        if passwdReloadAgain {
            passwdReloadAgain = false
            reloadPasswdFile()
        } else {
            finishReload()
        }
    }

    static func logPasswdDiagnostics(_ diagnostics: [Diagnostic], logger: Logger) {
        for d in diagnostics.prefix(maxPasswdWarningsLogged) { logger.warning("passwd-file: \(d)") }
        if diagnostics.count > maxPasswdWarningsLogged {
            logger.warning("passwd-file: \(diagnostics.count - maxPasswdWarningsLogged) more problem line(s) not shown")
        }
    }
}

/// A passwd-file read and parsed on `reloadPool`, handed to the loop.
struct PasswdLoad: Sendable {
    let result: Result<(PasswdFile, [Diagnostic]), any Error>
    /// `auth_mechanisms` warnings for the new file: counting users by scheme is O(users), so
    /// it is done here on the worker too, not on the loop.
    let mechanismWarnings: [String]

    init(path: String, mechanisms: [AuthMechanism]) {
        result = Result { try PasswdFile.load(path: path) }
        if case .success(let (file, _)) = result {
            mechanismWarnings = AuthMechanism.warnings(enabled: mechanisms, usersByScheme: file.usersByScheme)
        } else {
            mechanismWarnings = []
        }
    }
}
