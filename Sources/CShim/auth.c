#include "cshim_auth.h"

#include <crypt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

// Maps our small enum to OpenSSL's digest objects (functions, not constants).
static const EVP_MD *cshim_legacy_md(int md) {
    switch (md) {
    case CSHIM_MD_MD5: return EVP_md5();
    case CSHIM_MD_SHA1: return EVP_sha1();
    case CSHIM_MD_SHA256: return EVP_sha256();
    case CSHIM_MD_SHA512: return EVP_sha512();
    default: return NULL;
    }
}

// OpenSSL 3 looks the provider's implementation of a legacy EVP_sha256() up again at every
// EVP_DigestInit_ex (an "implicit fetch": a locked table lookup, about 1,100 instructions per
// digest, issue 17); a digest fetched once with EVP_MD_fetch skips that ("Performance" in
// OpenSSL's crypto(7)). Fetched once per process under pthread_once, so threads share the
// read-only objects; never freed (they live as long as the process). An algorithm the
// configuration does not offer (MD5 under a FIPS provider) stays NULL here and the legacy
// object is used, which then fails at EVP_DigestInit_ex exactly as before.
static EVP_MD *cshim_fetched[4];
static pthread_once_t cshim_fetch_once = PTHREAD_ONCE_INIT;

static void cshim_fetch_digests(void) {
    static const char *const names[4] = {"MD5", "SHA1", "SHA256", "SHA512"};
    for (int i = 0; i < 4; i++) cshim_fetched[i] = EVP_MD_fetch(NULL, names[i], NULL);
}

static const EVP_MD *cshim_md(int md) {
    if (md < CSHIM_MD_MD5 || md > CSHIM_MD_SHA512) return NULL;
    if (pthread_once(&cshim_fetch_once, cshim_fetch_digests) == 0 && cshim_fetched[md] != NULL)
        return cshim_fetched[md];
    return cshim_legacy_md(md);
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

// PLAIN passwords are compared as H(a) == H(b) (Auth's verify): the stored secret's length
// and prefixes must not show in the time a comparison takes, and equal-length digests compared
// with CRYPTO_memcmp hide both. One call for the two digests: they go to stack buffers and
// share one EVP context (reset between them; the context is this call's own, so worker threads
// may call this in parallel), where the Swift side made two heap arrays, two contexts and a
// third call to compare (issue 17). A failure of OpenSSL is -1, never "equal".
int cshim_digest_equal(int md, const void *a, size_t alen, const void *b, size_t blen) {
    const EVP_MD *m = cshim_md(md);
    if (m == NULL) return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return -1;
    uint8_t da[EVP_MAX_MD_SIZE], db[EVP_MAX_MD_SIZE];
    unsigned int la = 0, lb = 0;
    int ok = EVP_DigestInit_ex(ctx, m, NULL) == 1
        && (alen == 0 || EVP_DigestUpdate(ctx, a, alen) == 1)
        && EVP_DigestFinal_ex(ctx, da, &la) == 1
        && EVP_DigestInit_ex(ctx, m, NULL) == 1
        && (blen == 0 || EVP_DigestUpdate(ctx, b, blen) == 1)
        && EVP_DigestFinal_ex(ctx, db, &lb) == 1
        && la == lb && la > 0;
    EVP_MD_CTX_free(ctx);
    int rc = ok ? CRYPTO_memcmp(da, db, la) == 0 : -1;
    OPENSSL_cleanse(da, sizeof da);
    OPENSSL_cleanse(db, sizeof db);
    return rc;
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
