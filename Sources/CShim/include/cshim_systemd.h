// libsystemd's sd-daemon API, wrapped so that <systemd/sd-daemon.h> stays out of Swift's view:
// the char*** out-parameter and its release, and the few calls pop3d makes with fixed
// arguments (unset_env, the socket type).
#pragma once
#include <stdint.h>

/// sd_listen_fds_with_names(unset_env=1); names must be released with cshim_free_names.
/// Returns the count (fds start at 3) or a negative errno.
int cshim_sd_listen_fds_with_names(char ***names);
/// Frees the NULL-terminated array returned by sd_listen_fds_with_names.
void cshim_free_names(char **names);
/// sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, listening=1, port=0): 1 for a listening TCP socket.
int cshim_sd_is_listening_stream_inet(int fd);
/// sd_notify(unset_env=0, state): a no-op returning 0 when NOTIFY_SOCKET is not set.
int cshim_sd_notify(const char *state);
/// sd_watchdog_enabled(unset_env=0); writes the interval in microseconds when enabled.
int cshim_sd_watchdog_enabled(uint64_t *usec);
