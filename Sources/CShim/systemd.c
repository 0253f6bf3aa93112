#include "cshim_systemd.h"
#include <stdlib.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

int cshim_sd_listen_fds_with_names(char ***names) { return sd_listen_fds_with_names(1, names); }

void cshim_free_names(char **names) {
    if (!names) return;
    for (char **p = names; *p; p++) free(*p);
    free(names);
}

int cshim_sd_is_listening_stream_inet(int fd) { return sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0); }

int cshim_sd_notify(const char *state) { return sd_notify(0, state); }

int cshim_sd_watchdog_enabled(uint64_t *usec) { return sd_watchdog_enabled(0, usec); }
