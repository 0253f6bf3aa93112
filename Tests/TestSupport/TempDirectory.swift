import Glibc

/// A fresh directory under /tmp (`mkdtemp`), removed with everything below it when released.
/// The one temporary-folder helper of the test targets.
public final class TempDirectory {
    public let path: String

    /// `/tmp/<prefix>-XXXXXX`; when mkdtemp fails, a path that then makes the test fail on use.
    public init(prefix: String = "pop3d-test") {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, mkdtemp(base) != nil else { return nil }
            return String(cString: base)
        }
        path = made ?? "/tmp/\(prefix)-failed-\(getpid())"
    }

    deinit { Self.removeTree(path) }

    /// Deletes `path` and everything below it. Symbolic links are unlinked, never followed
    /// (`lstat`), so a hostile Maildir's links to elsewhere cannot make a test delete there.
    public static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            unlink(path)
            return
        }
        if let dir = opendir(path) {
            var names: [String] = []
            while let entry = readdir(dir) {
                // d_name read in place up to its NUL: glibc's buffer ends after the name, so
                // copying the whole 256-octet array reads past it (AddressSanitizer's report).
                let name = withUnsafePointer(to: &entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(dir)
            for name in names { removeTree(path + "/" + name) }
        }
        rmdir(path)
    }
}
