#include "cshim_auth.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

// Maps our small enum to OpenSSL's digest objects (functions, not constants).
static const EVP_MD *cshim_md(int md) {
    switch (md) {
    case CSHIM_MD_MD5: return EVP_md5();
    case CSHIM_MD_SHA1: return EVP_sha1();
    case CSHIM_MD_SHA256: return EVP_sha256();
    case CSHIM_MD_SHA512: return EVP_sha512();
    default: return NULL;
    }
}

// EVP_MD_get_size is a function in OpenSSL 3 but a macro in 1.1: hide it here.
int cshim_digest_size(int md) {
    const EVP_MD *m = cshim_md(md);
    return m == NULL ? -1 : EVP_MD_get_size(m);
}

// EVP digest contexts need alloc/init/update/final with error checks at each step.
int cshim_digest2(int md, const void *a, size_t alen, const void *b, size_t blen,
                  uint8_t *out) {
    const EVP_MD *m = cshim_md(md);
    if (m == NULL) return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return -1;
    unsigned int len = 0;
    int ok = EVP_DigestInit_ex(ctx, m, NULL) == 1
        && (alen == 0 || EVP_DigestUpdate(ctx, a, alen) == 1)
        && (blen == 0 || EVP_DigestUpdate(ctx, b, blen) == 1)
        && EVP_DigestFinal_ex(ctx, out, &len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? (int)len : -1;
}

// HMAC() takes an EVP_MD pointer that only C can obtain portably.
int cshim_hmac(int md, const void *key, size_t keylen, const void *data,
               size_t datalen, uint8_t *out) {
    const EVP_MD *m = cshim_md(md);
    if (m == NULL || keylen > 0x7fffffff) return -1;
    static const uint8_t empty = 0;
    unsigned int len = 0;
    if (HMAC(m, keylen == 0 ? &empty : key, (int)keylen,
             datalen == 0 ? &empty : data, datalen, out, &len) == NULL)
        return -1;
    return (int)len;
}

// PKCS5_PBKDF2_HMAC takes int lengths and an EVP_MD: checked and mapped here.
int cshim_pbkdf2(int md, const void *pass, size_t passlen, const void *salt,
                 size_t saltlen, unsigned iterations, uint8_t *out, size_t outlen) {
    const EVP_MD *m = cshim_md(md);
    if (m == NULL || iterations == 0 || iterations > 0x7fffffff
        || passlen > 0x7fffffff || saltlen > 0x7fffffff || outlen > 0x7fffffff)
        return 0;
    static const char empty = 0;
    return PKCS5_PBKDF2_HMAC(passlen == 0 ? &empty : pass, (int)passlen,
                             saltlen == 0 ? (const void *)&empty : salt, (int)saltlen,
                             (int)iterations, m, (int)outlen, out) == 1;
}

// RAND_bytes takes an int length; callers pass small sizes only.
int cshim_random_bytes(void *out, size_t len) {
    if (len > 0x7fffffff) return 0;
    return RAND_bytes(out, (int)len) == 1;
}

// CRYPTO_memcmp is OpenSSL's audited constant-time compare.
int cshim_const_time_equal(const void *a, const void *b, size_t len) {
    if (len == 0) return 1;
    return CRYPTO_memcmp(a, b, len) == 0;
}

// crypt_rn needs a 32 KiB struct crypt_data per call and reports failure with
// either NULL or a "*"-prefixed token; both become -1 here.
int cshim_crypt(const char *phrase, const char *setting, char *out, size_t outlen) {
    struct crypt_data *data = calloc(1, sizeof(struct crypt_data));
    if (data == NULL) return -1;
    const char *result = crypt_rn(phrase, setting, data, (int)sizeof(struct crypt_data));
    int rc = -1;
    if (result != NULL && result[0] != '*') {
        size_t len = strlen(result);
        if (len < outlen) {
            memcpy(out, result, len + 1);
            rc = (int)len;
        }
    }
    explicit_bzero(data, sizeof(struct crypt_data));
    free(data);
    return rc;
}

// crypt_gensalt_rn with NULL random bytes makes libxcrypt read the OS CSPRNG.
int cshim_crypt_gensalt(const char *prefix, unsigned long count, char *out,
                        size_t outlen) {
    if (outlen > 0x7fffffff) return -1;
    const char *s = crypt_gensalt_rn(prefix, count, NULL, 0, out, (int)outlen);
    if (s == NULL || s[0] == '*') return -1;
    return (int)strlen(out);
}

_Static_assert(CSHIM_CRYPT_OUTPUT_SIZE == CRYPT_OUTPUT_SIZE, "libxcrypt output size changed");
_Static_assert(CSHIM_CRYPT_GENSALT_OUTPUT_SIZE == CRYPT_GENSALT_OUTPUT_SIZE, "libxcrypt gensalt size changed");
