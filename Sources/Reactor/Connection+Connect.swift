import CShim
import Glibc

extension Connection {
    /// Opens a nonblocking client connection (pop3bench, tests). The connect completes in the
    /// background: output queues until the socket becomes writable, and a refused connect
    /// closes the connection with `.error` (ECONNREFUSED) or `.reset`.
    public static func connect(to address: SocketAddress, loop: EventLoop) throws -> Connection {
        let fd = try syscallBlocking("socket") { cshim_tcp_socket(address.addressFamily) }
        _ = cshim_set_tcp_nodelay(fd)
        let rc = address.withSockAddr { sa, len in Glibc.connect(fd, sa, len) }
        if rc != 0 {
            let err = Glibc.errno
            if err != EINPROGRESS && err != EINTR {
                closeDescriptor(fd)
                throw SyscallError(errno: err, call: "connect")
            }
        }
        return try Connection(fd: fd, peer: address, localName: nil, loop: loop)
    }
}
