import CShim
import Glibc

/// sd-daemon glue. Every call is a no-op outside systemd (no NOTIFY_SOCKET / LISTEN_FDS).
public enum Systemd {
    /// Descriptors passed by socket activation (from fd 3), with their FileDescriptorName=.
    /// The LISTEN_* variables are unset so children do not inherit them. systemd's default
    /// name "unknown" (and "stored") is reported as nil.
    public static func listenFDs() -> [(fd: Int32, name: String?)] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = cshim_sd_listen_fds_with_names(&names)
        defer { cshim_free_names(names) }
        guard count > 0 else { return [] }
        var result: [(fd: Int32, name: String?)] = []
        for i in 0..<Int(count) {
            var name: String?
            if let names, let cName = names[i] {
                let text = String(cString: cName)
                name = (text.isEmpty || text == "unknown") ? nil : text
            }
            result.append((fd: 3 + Int32(i), name: name))
        }
        return result
    }

    /// True when fd is a listening TCP socket (IPv4 or IPv6).
    public static func isListeningInetStream(_ fd: Int32) -> Bool {
        cshim_sd_is_listening_stream_inet(fd) > 0
    }

    /// Sends a state string such as "READY=1" to the service manager; ignored outside systemd.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        cshim_sd_notify(state) > 0
    }

    /// The watchdog interval (WATCHDOG_USEC) in nanoseconds when the watchdog is on for this process.
    public static func watchdogInterval() -> UInt64? {
        var usec: UInt64 = 0
        guard cshim_sd_watchdog_enabled(&usec) > 0, usec > 0 else { return nil }
        let (ns, overflow) = usec.multipliedReportingOverflow(by: 1000)
        return overflow ? UInt64.max : ns
    }

    /// CLOCK_MONOTONIC in microseconds, for "MONOTONIC_USEC=" with RELOADING=1.
    public static func monotonicMicroseconds() -> UInt64 {
        cshim_monotonic_ns() / 1000
    }
}
