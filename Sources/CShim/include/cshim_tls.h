#pragma once
// TLS through OpenSSL 3. Swift never sees OpenSSL's headers: the types are opaque
// here and every call Swift needs is a plain function returning plain ints,
// because the OpenSSL API Swift would need is mostly macros (SSL_CTX_set_*,
// SSL_set_tlsext_host_name, ...) that Swift cannot import.
#include <stddef.h>

struct ssl_st;     // OpenSSL's SSL, opaque to Swift
struct ssl_ctx_st; // OpenSSL's SSL_CTX, opaque to Swift
struct cshim_tls_server;

// Protocol versions as plain numbers so Swift does not need the TLS1_x_VERSION macros.
enum {
    CSHIM_TLS_V1_1 = 11,
    CSHIM_TLS_V1_2 = 12,
    CSHIM_TLS_V1_3 = 13,
};

// Outcome of handshake/read/write/shutdown: n > 0 bytes, 0 done, negative a state.
enum {
    CSHIM_TLS_DONE = 0,
    CSHIM_TLS_WANT_READ = -1,
    CSHIM_TLS_WANT_WRITE = -2,
    CSHIM_TLS_CLOSED = -3,
    CSHIM_TLS_ERROR = -4,
};

// Message of the last failure on this thread (OpenSSL error queue or errno), so
// Swift gets a readable reason without walking ERR_get_error itself.
const char *cshim_tls_error_message(void);

// --- server ---------------------------------------------------------------

// A set of SSL_CTXs, one per certificate, because SNI switches the whole SSL_CTX.
struct cshim_tls_server *cshim_tls_server_new(int min_version);
// Loads a PEM chain and key into a new SSL_CTX (macros for version/options/modes); 0 or -1.
int cshim_tls_server_add_certificate(struct cshim_tls_server *server, const char *cert_path,
                                     const char *key_path);
// Frees every SSL_CTX reference the set holds (open SSLs keep their own references).
void cshim_tls_server_free(struct cshim_tls_server *server);
// SSL_new + SSL_set_fd + accept state on the first (default) certificate; NULL on failure.
struct ssl_st *cshim_tls_server_session(struct cshim_tls_server *server, int fd);

// --- client (tests and pop3bench) ------------------------------------------

// Client SSL_CTX; max_version 0 = no cap; verify 0 = accept any certificate.
struct ssl_ctx_st *cshim_tls_client_context_new(int min_version, int max_version, int verify,
                                                const char *ca_file);
// SSL_CTX_free, so Swift does not link against OpenSSL symbols directly.
void cshim_tls_client_context_free(struct ssl_ctx_st *ctx);
// SSL_new + fd + connect state + SNI (a macro) + ALPN wire list; NULL on failure.
struct ssl_st *cshim_tls_client_session(struct ssl_ctx_st *ctx, int fd, const char *server_name,
                                        const unsigned char *alpn, unsigned alpn_length);

// --- per connection --------------------------------------------------------

// SSL_do_handshake with the error queue cleared first, mapped to CSHIM_TLS_*.
int cshim_tls_handshake(struct ssl_st *ssl);
// SSL_read mapped to bytes or CSHIM_TLS_*; WANT_WRITE is kept distinct for the loop.
int cshim_tls_read(struct ssl_st *ssl, void *buffer, int length);
// SSL_write mapped likewise; partial writes are enabled by the context.
int cshim_tls_write(struct ssl_st *ssl, const void *buffer, int length);
// SSL_pending: decrypted bytes epoll will never signal.
int cshim_tls_pending(const struct ssl_st *ssl);
// SSL_shutdown: CSHIM_TLS_DONE once close_notify is sent (the peer's is not awaited).
int cshim_tls_shutdown(struct ssl_st *ssl);
// SSL_free (drops its SSL_CTX reference).
void cshim_tls_free(struct ssl_st *ssl);

// Negotiated ALPN protocol (not NUL-terminated); NULL when none.
const unsigned char *cshim_tls_alpn(const struct ssl_st *ssl, unsigned *length);
// SNI host name the client sent (server side) or set (client side); NULL when none.
const char *cshim_tls_server_name(const struct ssl_st *ssl);
// "TLSv1.3" etc.
const char *cshim_tls_protocol_version(const struct ssl_st *ssl);
// Cipher suite name; NULL before the handshake.
const char *cshim_tls_cipher(const struct ssl_st *ssl);
// Subject CN of the peer's certificate into buffer; length or -1 (X509 name macros).
int cshim_tls_peer_common_name(const struct ssl_st *ssl, char *buffer, int length);
