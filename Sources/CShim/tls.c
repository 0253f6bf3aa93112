#include "cshim_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Maximum certificates one server context selects among by SNI.
#define CSHIM_TLS_MAX_CERTIFICATES 64
// Server-side session cache entries per certificate (OpenSSL's default, named here).
#define CSHIM_TLS_SESSION_CACHE_SIZE 20480

static const unsigned char pop3_alpn[] = {4, 'p', 'o', 'p', '3'};
static const unsigned char session_id_context[] = "pop3d";

static __thread char error_message[512];

struct cshim_tls_server {
    int min_version;
    int count;
    SSL_CTX *contexts[CSHIM_TLS_MAX_CERTIFICATES];
};

const char *cshim_tls_error_message(void) { return error_message; }

// Drains the OpenSSL error queue into error_message, prefixed by what we were doing.
static void record_error(const char *what) {
    size_t used = (size_t)snprintf(error_message, sizeof error_message, "%s", what);
    unsigned long code;
    int first = 1;
    while ((code = ERR_get_error()) != 0) {
        if (used + 3 >= sizeof error_message) continue; // keep draining the queue
        char line[256];
        ERR_error_string_n(code, line, sizeof line);
        used += (size_t)snprintf(error_message + used, sizeof error_message - used, "%s%s",
                                 first ? ": " : "; ", line);
        first = 0;
    }
}

static int protocol_version(int version) {
    switch (version) {
    case CSHIM_TLS_V1_1: return TLS1_1_VERSION;
    case CSHIM_TLS_V1_2: return TLS1_2_VERSION;
    case CSHIM_TLS_V1_3: return TLS1_3_VERSION;
    default: return -1;
    }
}

// ALPN (RFC 7301): accept "pop3" when offered; otherwise continue without ALPN
// rather than failing the handshake, since most POP3 clients send none or others.
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    (void)arg;
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, pop3_alpn, sizeof pop3_alpn, in, inlen) ==
            OPENSSL_NPN_NEGOTIATED &&
        selected != NULL) {
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

// SNI (RFC 6066 §3): switch to the first context whose certificate names match
// (X509_check_host handles SAN DNS and wildcards); no match keeps the default.
static int servername_select(SSL *ssl, int *alert, void *arg) {
    (void)alert;
    struct cshim_tls_server *server = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == NULL || server == NULL) return SSL_TLSEXT_ERR_NOACK;
    for (int i = 0; i < server->count; i++) {
        X509 *cert = SSL_CTX_get0_certificate(server->contexts[i]);
        if (cert != NULL && X509_check_host(cert, name, 0, 0, NULL) == 1) {
            if (i != 0) SSL_set_SSL_CTX(ssl, server->contexts[i]);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

// Options every context shares; modes let the reactor retry writes from a moved
// buffer and give idle connections' buffers back (tens of thousands of sessions).
static void configure_common(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 // POP3 frames its own data (dot-terminated),
                                 // so an EOF without close_notify is a close.
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
}

struct cshim_tls_server *cshim_tls_server_new(int min_version) {
    if (protocol_version(min_version) < 0) {
        snprintf(error_message, sizeof error_message, "unsupported minimum TLS version %d",
                 min_version);
        return NULL;
    }
    struct cshim_tls_server *server = calloc(1, sizeof *server);
    if (server == NULL) {
        snprintf(error_message, sizeof error_message, "out of memory");
        return NULL;
    }
    server->min_version = min_version;
    return server;
}

int cshim_tls_server_add_certificate(struct cshim_tls_server *server, const char *cert_path,
                                     const char *key_path) {
    char what[400];
    ERR_clear_error();
    if (server->count >= CSHIM_TLS_MAX_CERTIFICATES) {
        snprintf(error_message, sizeof error_message, "more than %d certificates",
                 CSHIM_TLS_MAX_CERTIFICATES);
        return -1;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        record_error("SSL_CTX_new failed");
        return -1;
    }
    configure_common(ctx);
    if (SSL_CTX_set_min_proto_version(ctx, protocol_version(server->min_version)) != 1) {
        record_error("cannot set the minimum TLS version");
        goto fail;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, CSHIM_TLS_SESSION_CACHE_SIZE);
    SSL_CTX_set_session_id_context(ctx, session_id_context, sizeof session_id_context - 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        snprintf(what, sizeof what, "cannot load certificate chain %s", cert_path);
        record_error(what);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof what, "cannot load private key %s", key_path);
        record_error(what);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof what, "private key %s does not match certificate %s", key_path,
                 cert_path);
        record_error(what);
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    // Every context carries the callback: SSL_new always starts on contexts[0],
    // but keeping them identical makes any of them a valid default.
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_select);
    SSL_CTX_set_tlsext_servername_arg(ctx, server);
    server->contexts[server->count++] = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return -1;
}

void cshim_tls_server_free(struct cshim_tls_server *server) {
    if (server == NULL) return;
    for (int i = 0; i < server->count; i++) SSL_CTX_free(server->contexts[i]);
    free(server);
}

struct ssl_st *cshim_tls_server_session(struct cshim_tls_server *server, int fd) {
    ERR_clear_error();
    if (server->count == 0) {
        snprintf(error_message, sizeof error_message, "no certificate loaded");
        return NULL;
    }
    SSL *ssl = SSL_new(server->contexts[0]);
    if (ssl == NULL) {
        record_error("SSL_new failed");
        return NULL;
    }
    if (SSL_set_fd(ssl, fd) != 1) {
        record_error("SSL_set_fd failed");
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

struct ssl_ctx_st *cshim_tls_client_context_new(int min_version, int max_version, int verify,
                                                const char *ca_file) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        record_error("SSL_CTX_new failed");
        return NULL;
    }
    configure_common(ctx);
    if (max_version == CSHIM_TLS_V1_1 || min_version == CSHIM_TLS_V1_1) {
        // TLS 1.1 needs SHA-1 signatures, refused above security level 0; only
        // tests build such clients (to see the server refuse them).
        SSL_CTX_set_security_level(ctx, 0);
    }
    if (SSL_CTX_set_min_proto_version(ctx, protocol_version(min_version)) != 1 ||
        (max_version != 0 &&
         SSL_CTX_set_max_proto_version(ctx, protocol_version(max_version)) != 1)) {
        record_error("cannot set the TLS version range");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int loaded = ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                                     : SSL_CTX_set_default_verify_paths(ctx);
        if (loaded != 1) {
            record_error("cannot load CA certificates");
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

void cshim_tls_client_context_free(struct ssl_ctx_st *ctx) { SSL_CTX_free(ctx); }

struct ssl_st *cshim_tls_client_session(struct ssl_ctx_st *ctx, int fd, const char *server_name,
                                        const unsigned char *alpn, unsigned alpn_length) {
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        record_error("SSL_new failed");
        return NULL;
    }
    if (SSL_set_fd(ssl, fd) != 1) {
        record_error("SSL_set_fd failed");
        goto fail;
    }
    if (server_name != NULL) {
        if (SSL_set_tlsext_host_name(ssl, server_name) != 1) {
            record_error("cannot set SNI host name");
            goto fail;
        }
        // With verification on, the certificate must also name this host.
        if (SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE && SSL_set1_host(ssl, server_name) != 1) {
            record_error("cannot set the expected host name");
            goto fail;
        }
    }
    // SSL_set_alpn_protos returns 0 on success, unlike nearly everything else.
    if (alpn != NULL && alpn_length > 0 && SSL_set_alpn_protos(ssl, alpn, alpn_length) != 0) {
        record_error("cannot set ALPN protocols");
        goto fail;
    }
    SSL_set_connect_state(ssl);
    return ssl;
fail:
    SSL_free(ssl);
    return NULL;
}

// Maps SSL_get_error to CSHIM_TLS_*; must run right after the failing call.
static int map_error(SSL *ssl, int result, const char *what) {
    int code = SSL_get_error(ssl, result);
    switch (code) {
    case SSL_ERROR_WANT_READ: return CSHIM_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return CSHIM_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return CSHIM_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            if (errno == 0) return CSHIM_TLS_CLOSED; // EOF on the socket
            snprintf(error_message, sizeof error_message, "%s: %s", what, strerror(errno));
            return CSHIM_TLS_ERROR;
        }
        record_error(what);
        return CSHIM_TLS_ERROR;
    default: record_error(what); return CSHIM_TLS_ERROR;
    }
}

int cshim_tls_handshake(struct ssl_st *ssl) {
    ERR_clear_error();
    errno = 0;
    int result = SSL_do_handshake(ssl);
    if (result == 1) return CSHIM_TLS_DONE;
    int mapped = map_error(ssl, result, "TLS handshake failed");
    // A peer that hangs up mid-handshake has failed it, not closed a session.
    if (mapped == CSHIM_TLS_CLOSED) {
        snprintf(error_message, sizeof error_message, "TLS handshake failed: peer closed");
        return CSHIM_TLS_ERROR;
    }
    return mapped;
}

int cshim_tls_read(struct ssl_st *ssl, void *buffer, int length) {
    ERR_clear_error();
    errno = 0;
    int result = SSL_read(ssl, buffer, length);
    if (result > 0) return result;
    return map_error(ssl, result, "TLS read failed");
}

int cshim_tls_write(struct ssl_st *ssl, const void *buffer, int length) {
    ERR_clear_error();
    errno = 0;
    int result = SSL_write(ssl, buffer, length);
    if (result > 0) return result;
    return map_error(ssl, result, "TLS write failed");
}

int cshim_tls_pending(const struct ssl_st *ssl) { return SSL_pending(ssl); }

int cshim_tls_shutdown(struct ssl_st *ssl) {
    ERR_clear_error();
    errno = 0;
    int result = SSL_shutdown(ssl);
    if (result >= 0) return CSHIM_TLS_DONE; // 0: ours sent, theirs not awaited
    return map_error(ssl, result, "TLS shutdown failed");
}

void cshim_tls_free(struct ssl_st *ssl) { SSL_free(ssl); }

const unsigned char *cshim_tls_alpn(const struct ssl_st *ssl, unsigned *length) {
    const unsigned char *data = NULL;
    SSL_get0_alpn_selected(ssl, &data, length);
    return (data != NULL && *length > 0) ? data : NULL;
}

const char *cshim_tls_server_name(const struct ssl_st *ssl) {
    return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
}

const char *cshim_tls_protocol_version(const struct ssl_st *ssl) { return SSL_get_version(ssl); }

const char *cshim_tls_cipher(const struct ssl_st *ssl) {
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    return cipher != NULL ? SSL_CIPHER_get_name(cipher) : NULL;
}

int cshim_tls_peer_common_name(const struct ssl_st *ssl, char *buffer, int length) {
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (cert == NULL) return -1;
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buffer, length);
    X509_free(cert);
    return n;
}
