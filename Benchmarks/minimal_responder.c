/*
 * The ceiling for pop3d's CPU per session (issue 17): a single-threaded epoll responder that
 * serves exactly the session `pop3bench session` runs (greeting, USER, PASS, STAT, LIST, UIDL,
 * RETR n for every message, QUIT) with the fewest system calls and instructions we know how to
 * spend. It is NOT a server: no authentication (PASS is accepted whatever it says), no locking,
 * no limits, no errors worth the name, no TOP/DELE/CAPA. Benchmarks/session_profile.py builds it
 * with `cc -O2` and measures it like pop3d.
 *
 *     minimal_responder PORT MAILROOT        (the user's Maildir is MAILROOT/<user>/Maildir)
 *
 * Per session it spends: accept4, epoll_ctl(ADD), one write per reply, one read per command,
 * the login listing (openat + getdents64 until 0 + close for cur/ and new/), per RETR
 * openat + read + close of the message (its CRLF size is known, so one read of a buffer larger
 * than the file; a short read of a regular file is its end), and close of the socket (which
 * also removes it from the epoll set). TCP_NODELAY is set once on the listener: accepted
 * sockets inherit it on Linux. Message sizes as LIST counts them (CRLF line ends, RFC 1939
 * §11) are computed once per file name and kept in memory for the life of the process: the
 * ideal size cache, costing nothing per session.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_MESSAGES 4096
#define NAME_MAX_LEN 256
#define IN_CAP 4096
#define DIRBUF_CAP 65536

struct message {
    char path[NAME_MAX_LEN + 8]; /* "cur/name" or "new/name" */
    size_t uidl_len;             /* the name up to ":2," */
    size_t size;                 /* octets as LIST counts them */
};

struct conn {
    int fd;
    char user[128];
    char maildir[512];
    size_t in_len;
    char in[IN_CAP];
    size_t count, total;
    struct message *messages;
    size_t messages_cap;
    char *pending; /* unwritten output (slow path: socket buffer full) */
    size_t pending_len, pending_off;
};

static const char *mailroot;
static int epfd;

/* ---- output buffer shared by all replies (one reply at a time: single-threaded) ---- */
static char *out;
static size_t out_len, out_cap;

static void out_reserve(size_t more) {
    if (out_len + more <= out_cap) return;
    while (out_len + more > out_cap) out_cap = out_cap ? out_cap * 2 : 1 << 20;
    out = realloc(out, out_cap);
    if (!out) abort();
}

static void out_bytes(const char *p, size_t n) {
    out_reserve(n);
    memcpy(out + out_len, p, n);
    out_len += n;
}

static void out_str(const char *s) { out_bytes(s, strlen(s)); }

static void out_num(size_t v) {
    char tmp[24];
    int i = sizeof tmp;
    do { tmp[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    out_bytes(tmp + i, sizeof tmp - i);
}

static void close_conn(struct conn *c) {
    close(c->fd); /* removes it from the epoll set: it was never dup'ed */
    free(c->messages);
    free(c->pending);
    free(c);
}

/* Sends out[0..out_len) on c; keeps what the socket does not take and waits for EPOLLOUT. */
static void flush_out(struct conn *c) {
    ssize_t w = write(c->fd, out, out_len);
    size_t done = w > 0 ? (size_t)w : 0;
    if (done < out_len) {
        c->pending = realloc(c->pending, out_len - done);
        if (!c->pending) abort();
        memcpy(c->pending, out + done, out_len - done);
        c->pending_len = out_len - done;
        c->pending_off = 0;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
    out_len = 0;
}

/* ---- the size cache: file name -> CRLF size, open addressing, never shrinks ---- */
struct size_entry { char *name; size_t size; };
static struct size_entry *sizes;
static size_t sizes_cap, sizes_count;

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    while (*s) { h ^= (unsigned char)*s++; h *= 1099511628211ULL; }
    return h;
}

static struct size_entry *size_slot(const char *name) {
    if (sizes_count * 2 >= sizes_cap) {
        size_t old_cap = sizes_cap;
        struct size_entry *old = sizes;
        sizes_cap = old_cap ? old_cap * 2 : 1 << 16;
        sizes = calloc(sizes_cap, sizeof *sizes);
        if (!sizes) abort();
        for (size_t i = 0; i < old_cap; i++) {
            if (!old[i].name) continue;
            size_t j = hash_name(old[i].name) & (sizes_cap - 1);
            while (sizes[j].name) j = (j + 1) & (sizes_cap - 1);
            sizes[j] = old[i];
        }
        free(old);
    }
    size_t j = hash_name(name) & (sizes_cap - 1);
    while (sizes[j].name && strcmp(sizes[j].name, name) != 0) j = (j + 1) & (sizes_cap - 1);
    return &sizes[j];
}

/* Reads the whole file at `path` into out (from out_len on); returns the octets read. A
 * short read of a regular file is its end, so a file smaller than the buffer takes one read. */
static size_t read_file_into_out(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    size_t got = 0;
    for (;;) {
        out_reserve(got + 65536);
        size_t room = out_cap - out_len - got;
        ssize_t r = read(fd, out + out_len + got, room);
        if (r <= 0) break;
        got += (size_t)r;
        if ((size_t)r < room) break;
    }
    close(fd);
    return got;
}

static size_t crlf_size(const char *path) {
    struct size_entry *e = size_slot(path);
    if (e->name) return e->size;
    size_t start = out_len;
    size_t n = read_file_into_out(path);
    size_t size = n;
    const char *p = out + start;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) size++;
    if (n && p[n - 1] != '\n') size += 2; /* the final line gets its CRLF */
    e->name = strdup(path);
    e->size = size;
    sizes_count++;
    return size;
}

/* dst = a + "/" + b + suffix (no bounds beyond `cap`: names here are short); snprintf's
 * format parsing costs more than the rest of a STAT. */
static void join(char *dst, size_t cap, const char *a, const char *b, const char *suffix) {
    size_t la = strlen(a), lb = strlen(b), ls = strlen(suffix);
    if (la + 1 + lb + ls + 1 > cap) { dst[0] = 0; return; }
    memcpy(dst, a, la);
    dst[la] = '/';
    memcpy(dst + la + 1, b, lb);
    memcpy(dst + la + 1 + lb, suffix, ls + 1);
}

/* ---- the login listing ---- */
static void list_dir(struct conn *c, const char *sub) {
    char path[700];
    join(path, sizeof path, c->maildir, sub, "");
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    static char buf[DIRBUF_CAP];
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] == '.') continue;
            if (c->count == c->messages_cap) {
                c->messages_cap = c->messages_cap ? c->messages_cap * 2 : 16;
                c->messages = realloc(c->messages, c->messages_cap * sizeof *c->messages);
                if (!c->messages) abort();
            }
            struct message *m = &c->messages[c->count++];
            join(m->path, sizeof m->path, sub, d->d_name, "");
            char *colon = strstr(d->d_name, ":2,");
            m->uidl_len = colon ? (size_t)(colon - d->d_name) : strlen(d->d_name);
        }
    }
    close(fd);
}

static void login(struct conn *c) {
    join(c->maildir, sizeof c->maildir, mailroot, c->user, "/Maildir");
    c->count = 0;
    c->total = 0;
    list_dir(c, "cur");
    list_dir(c, "new");
    char full[1024];
    for (size_t i = 0; i < c->count; i++) {
        join(full, sizeof full, c->maildir, c->messages[i].path, "");
        c->messages[i].size = crlf_size(full);
        c->total += c->messages[i].size;
    }
    out_len = 0; /* crlf_size used out as scratch */
}

static void retr(struct conn *c, size_t n) {
    if (n < 1 || n > c->count) { out_str("-ERR no such message\r\n"); return; }
    struct message *m = &c->messages[n - 1];
    out_str("+OK ");
    out_num(m->size);
    out_str(" octets\r\n");
    char full[1024];
    join(full, sizeof full, c->maildir, m->path, "");
    /* Read the file behind the reply's head, then CRLF-convert and dot-stuff it into place. */
    size_t head = out_len;
    size_t got = read_file_into_out(full);
    /* Worst case doubles (every octet a LF): move the raw bytes to the buffer's far end. */
    out_reserve(got * 3 + 8);
    char *raw = out + out_cap - got;
    memmove(raw, out + head, got);
    char *w = out + head;
    /* Line by line: memchr for the LF, one memcpy, CR (if missing) and LF written inline. */
    const char *p = raw, *end = raw + got;
    while (p < end) {
        if (*p == '.') *w++ = '.';
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf) {
            memcpy(w, p, (size_t)(end - p));
            w += end - p;
            *w++ = '\r';
            *w++ = '\n';
            break;
        }
        size_t n = (size_t)(lf - p);
        memcpy(w, p, n);
        w += n;
        if (n == 0 || p[n - 1] != '\r') *w++ = '\r';
        *w++ = '\n';
        p = lf + 1;
    }
    out_len = (size_t)(w - out);
    out_str(".\r\n");
}

/* One command line (CRLF stripped). Returns 0 when the connection was closed. */
static int command(struct conn *c, char *line, size_t len) {
    line[len] = 0;
    if (len >= 5 && !strncasecmp(line, "USER ", 5)) {
        size_t n = len - 5 < sizeof c->user - 1 ? len - 5 : sizeof c->user - 1;
        memcpy(c->user, line + 5, n);
        c->user[n] = 0;
        out_str("+OK\r\n");
    } else if (len >= 4 && !strncasecmp(line, "PASS", 4)) {
        login(c);
        out_str("+OK logged in\r\n");
    } else if (len == 4 && !strncasecmp(line, "STAT", 4)) {
        out_str("+OK ");
        out_num(c->count);
        out_str(" ");
        out_num(c->total);
        out_str("\r\n");
    } else if (len == 4 && !strncasecmp(line, "LIST", 4)) {
        out_str("+OK\r\n");
        for (size_t i = 0; i < c->count; i++) {
            out_num(i + 1);
            out_str(" ");
            out_num(c->messages[i].size);
            out_str("\r\n");
        }
        out_str(".\r\n");
    } else if (len == 4 && !strncasecmp(line, "UIDL", 4)) {
        out_str("+OK\r\n");
        for (size_t i = 0; i < c->count; i++) {
            out_num(i + 1);
            out_str(" ");
            out_bytes(c->messages[i].path + 4, c->messages[i].uidl_len);
            out_str("\r\n");
        }
        out_str(".\r\n");
    } else if (len > 5 && !strncasecmp(line, "RETR ", 5)) {
        retr(c, strtoul(line + 5, NULL, 10));
    } else if (len == 4 && !strncasecmp(line, "QUIT", 4)) {
        out_str("+OK bye\r\n");
        flush_out(c);
        close_conn(c);
        return 0;
    } else {
        out_str("-ERR unknown command\r\n");
    }
    return 1;
}

static void readable(struct conn *c) {
    ssize_t r = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
    if (r <= 0) { close_conn(c); return; }
    c->in_len += (size_t)r;
    size_t start = 0;
    for (;;) {
        char *lf = memchr(c->in + start, '\n', c->in_len - start);
        if (!lf) break;
        size_t end = (size_t)(lf - c->in);
        size_t len = end - start;
        if (len && c->in[start + len - 1] == '\r') len--;
        if (!command(c, c->in + start, len)) return;
        start = end + 1;
    }
    if (out_len) flush_out(c);
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
    if (c->in_len == IN_CAP) c->in_len = 0; /* a line too long: dropped, as no client sends one */
}

static void writable(struct conn *c) {
    ssize_t w = write(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off);
    if (w > 0) c->pending_off += (size_t)w;
    if (c->pending_off == c->pending_len) {
        c->pending_len = c->pending_off = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: minimal_responder PORT MAILROOT\n");
        return 64;
    }
    mailroot = argv[2];
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 4096)) {
        perror("minimal_responder: bind/listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(epfd, events, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) continue;
                c = calloc(1, sizeof *c);
                if (!c) abort();
                c->fd = fd;
                struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                out_str("+OK minimal responder ready\r\n");
                flush_out(c);
                continue;
            }
            if (events[i].events & EPOLLOUT) writable(c);
            else readable(c);
        }
    }
}
