// Auth's C: OpenSSL digests/HMAC/PBKDF2 take EVP_MD pointers from functions and
// macros that Swift cannot name portably, and libxcrypt's crypt_r needs a 32 KiB
// scratch struct that is easiest to own in C. Everything here is reentrant:
// the Auth worker threads call it in parallel.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// Digest algorithms of the Digests target (Auth, Maildrop, pop3bench), by number so Swift never touches EVP_MD.
enum {
    CSHIM_MD_MD5 = 0,
    CSHIM_MD_SHA1 = 1,
    CSHIM_MD_SHA256 = 2,
    CSHIM_MD_SHA512 = 3,
};

/// Output buffer sizes for cshim_crypt / cshim_crypt_gensalt (libxcrypt's
/// CRYPT_OUTPUT_SIZE and CRYPT_GENSALT_OUTPUT_SIZE; crypt.h stays out of Swift).
#define CSHIM_CRYPT_OUTPUT_SIZE 384
#define CSHIM_CRYPT_GENSALT_OUTPUT_SIZE 192

/// Largest digest any CSHIM_MD_* produces (SHA-512).
#define CSHIM_MD_MAX_SIZE 64

/// Output size of algorithm `md` in bytes, or -1 for an unknown algorithm.
int cshim_digest_size(int md);

/// Digest of the concatenation a||b into out (>= CSHIM_MD_MAX_SIZE); returns
/// the length, or -1. Two parts because every salted scheme hashes pw||salt.
int cshim_digest2(int md, const void *a, size_t alen, const void *b, size_t blen,
                  uint8_t *out);

/// Whether digest(a) == digest(b), compared in constant time (CRYPTO_memcmp) with both
/// digests in stack buffers: 1 equal, 0 different, -1 when OpenSSL failed. For secrets
/// compared without leaking their length or prefixes through timing (PLAIN passwords).
int cshim_digest_equal(int md, const void *a, size_t alen, const void *b, size_t blen);

/// HMAC(key, data) into out (>= CSHIM_MD_MAX_SIZE); returns the length or -1.
/// HMAC() is a one-shot OpenSSL call but needs an EVP_MD from a C function.
int cshim_hmac(int md, const void *key, size_t keylen, const void *data,
               size_t datalen, uint8_t *out);

/// PBKDF2-HMAC (RFC 8018) for SCRAM (RFC 5802 Hi()); returns 1 on success.
int cshim_pbkdf2(int md, const void *pass, size_t passlen, const void *salt,
                 size_t saltlen, unsigned iterations, uint8_t *out, size_t outlen);

/// RAND_bytes from OpenSSL's CSPRNG; returns 1 on success.
int cshim_random_bytes(void *out, size_t len);

/// CRYPTO_memcmp: constant-time equality of two equal-length buffers; 1 if equal.
int cshim_const_time_equal(const void *a, const void *b, size_t len);

/// crypt_rn(phrase, setting) with a heap scratch area (struct crypt_data is
/// 32 KiB, too big for a worker's stack frame in Swift). Copies the result
/// (NUL-terminated) into out; returns its length, or -1 when libxcrypt fails
/// or the setting is invalid (libxcrypt's "*0"/"*1" failure tokens included).
int cshim_crypt(const char *phrase, const char *setting, char *out, size_t outlen);

/// crypt_gensalt_rn(prefix, count) with libxcrypt's own OS randomness; writes a
/// setting string into out; returns its length or -1.
int cshim_crypt_gensalt(const char *prefix, unsigned long count, char *out,
                        size_t outlen);
