import ArgumentParser
import Glibc

// Block the signals the reactor takes through signalfd before any other thread exists (the
// Swift concurrency pool, the hashing workers): threads inherit the mask, so SIGTERM, SIGINT
// and SIGHUP can only be consumed by the signalfd, never kill the process by their default
// action in some thread that did not block them.
var handled = sigset_t()
sigemptyset(&handled)
for signo in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&handled, signo) }
pthread_sigmask(SIG_BLOCK, &handled, nil)
signal(SIGPIPE, SIG_IGN)

Pop3d.main()
