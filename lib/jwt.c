/* jwt.c - RS256 access tokens over libjwt, with the algorithm pinned before libjwt sees
 * the token (see jwt.h). */
#include "kchat/jwt.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <jwt.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

#define KEY_MAX (16 * 1024)
#define HEADER_MAX 1024
#define SIG_B64_MAX 1400 /* an RS256 signature of an 8192-bit key: 1366 characters */

struct kc_jwt_key {
    unsigned char *pem; /* the file, each PEM block in it one key */
    int pem_len;
    int nkeys;
    struct {
        const unsigned char *pem;
        int len;
    } keys[KC_JWT_MAX_KEYS];
    char *issuer;
    char *audience;
};

/* Splits the file into its PEM blocks ("-----BEGIN ..." through the matching "-----END
 * ...-----"). Returns the count, 0 when there is none, -1 when there are too many or a block
 * is not closed. */
static int split_pem(kc_jwt_key_t *k)
{
    const char *p = (const char *)k->pem, *end = p + k->pem_len;
    int n = 0;
    while ((p = strstr(p, "-----BEGIN ")) != NULL) {
        const char *e = strstr(p, "-----END ");
        const char *close = e ? strstr(e + 9, "-----") : NULL;
        if (!close || close + 5 > end || n == KC_JWT_MAX_KEYS)
            return -1;
        k->keys[n].pem = (const unsigned char *)p;
        k->keys[n].len = (int)(close + 5 - p);
        n++;
        p = close + 5;
    }
    return n;
}

kc_jwt_key_t *kc_jwt_key_load(const char *path, const char *issuer, const char *audience,
                              char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        kc_strlcpyf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = kc_xmalloc(KEY_MAX + 1);
    size_t n = fread(buf, 1, KEY_MAX + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || n == 0 || n > KEY_MAX) {
        kc_strlcpyf(err, errlen, "%s: %s", path,
                    rerr ? "read error" : n == 0 ? "empty file" : "larger than 16 KiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    kc_jwt_key_t *k = kc_xcalloc(1, sizeof(*k));
    k->pem = buf;
    k->pem_len = (int)n;
    k->nkeys = split_pem(k);
    if (k->nkeys <= 0) {
        kc_strlcpyf(err, errlen,
                    k->nkeys == 0 ? "%s: not a PEM file"
                                  : "%s: a PEM block is not closed, or more than %d keys",
                    path, KC_JWT_MAX_KEYS);
        sodium_memzero(buf, n);
        free(buf);
        free(k);
        return NULL;
    }
    k->issuer = kc_xstrdup(issuer);
    k->audience = kc_xstrdup(audience);
    return k;
}

void kc_jwt_key_free(kc_jwt_key_t *k)
{
    if (!k)
        return;
    sodium_memzero(k->pem, (size_t)k->pem_len);
    free(k->pem);
    free(k->issuer);
    free(k->audience);
    free(k);
}

const char *kc_jwt_status_code(kc_jwt_status_t s)
{
    switch (s) {
    case KC_JWT_OK: return "ok";
    case KC_JWT_EXPIRED: return "token_expired";
    case KC_JWT_NOT_YET_VALID: return "token_not_yet_valid";
    case KC_JWT_ALG_REFUSED: return "token_algorithm_refused";
    case KC_JWT_BAD_ISSUER:
    case KC_JWT_BAD_AUDIENCE: return "token_wrong_audience";
    default: return "token_invalid";
    }
}

/* Decodes the header part and insists on {"alg":"RS256"} (typ, when present, "JWT"). */
static kc_jwt_status_t check_header(const char *token, size_t hlen, char *err, size_t errlen)
{
    if (hlen == 0 || hlen > HEADER_MAX) {
        kc_strlcpyf(err, errlen, "malformed token header");
        return KC_JWT_MALFORMED;
    }
    unsigned char raw[HEADER_MAX];
    size_t rawlen = 0;
    if (sodium_base642bin(raw, sizeof(raw) - 1, token, hlen, NULL, &rawlen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
        kc_strlcpyf(err, errlen, "token header is not base64url");
        return KC_JWT_MALFORMED;
    }
    raw[rawlen] = '\0';
    cJSON *h = cJSON_ParseWithLength((const char *)raw, rawlen);
    if (!cJSON_IsObject(h)) {
        cJSON_Delete(h);
        kc_strlcpyf(err, errlen, "token header is not a JSON object");
        return KC_JWT_MALFORMED;
    }
    kc_jwt_status_t st = KC_JWT_OK;
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    const cJSON *typ = cJSON_GetObjectItemCaseSensitive(h, "typ");
    if (!cJSON_IsString(alg) || strcmp(alg->valuestring, KC_JWT_ALG) != 0) {
        kc_strlcpyf(err, errlen, "token algorithm refused (only %s is accepted)", KC_JWT_ALG);
        st = KC_JWT_ALG_REFUSED;
    } else if (typ && (!cJSON_IsString(typ) || strcasecmp(typ->valuestring, "JWT") != 0)) {
        kc_strlcpyf(err, errlen, "token type refused");
        st = KC_JWT_MALFORMED;
    } else if (cJSON_GetObjectItemCaseSensitive(h, "crit")) {
        kc_strlcpyf(err, errlen, "token has critical extensions");
        st = KC_JWT_MALFORMED;
    }
    cJSON_Delete(h);
    return st;
}

/* True when s is the one base64url spelling (no padding, unused bits zero) of its bytes:
 * libjwt also reads padded and non-canonical forms, so one signature would have many
 * spellings and a token many strings. */
static int canonical_b64url(const char *s, size_t n)
{
    if (n > SIG_B64_MAX)
        return 0;
    unsigned char raw[SIG_B64_MAX];
    size_t rawlen = 0;
    const char *end = NULL;
    if (sodium_base642bin(raw, sizeof(raw), s, n, NULL, &rawlen, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != s + n)
        return 0;
    char again[SIG_B64_MAX + 1];
    sodium_bin2base64(again, sizeof(again), raw, rawlen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return strlen(again) == n && memcmp(again, s, n) == 0;
}

/* aud may be a string or an array of strings (RFC 7519 4.1.3). */
static int audience_ok(jwt_t *jwt, const char *want)
{
    const char *aud = jwt_get_grant(jwt, "aud");
    if (aud)
        return strcmp(aud, want) == 0;
    char *json = jwt_get_grants_json(jwt, "aud");
    if (!json)
        return 0;
    cJSON *arr = cJSON_Parse(json);
    free(json);
    int ok = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (cJSON_IsString(it) && strcmp(it->valuestring, want) == 0)
            ok = 1;
    }
    cJSON_Delete(arr);
    return ok;
}

static int subject_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > KC_JWT_SUB_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return 0;
    }
    return kc_utf8_valid(s, n);
}

kc_jwt_status_t kc_jwt_verify(const kc_jwt_key_t *k, const char *token, long long now_s,
                              long long leeway_s, kc_jwt_claims_t *out, char *err,
                              size_t errlen)
{
    memset(out, 0, sizeof(*out));
    size_t len = token ? strnlen(token, KC_JWT_MAX_LEN + 1) : 0;
    if (len == 0 || len > KC_JWT_MAX_LEN) {
        kc_strlcpyf(err, errlen, len ? "token too long" : "no token");
        return KC_JWT_MALFORMED;
    }
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token))) {
        kc_strlcpyf(err, errlen, "malformed token");
        return KC_JWT_MALFORMED;
    }
    kc_jwt_status_t st = check_header(token, (size_t)(dot1 - token), err, errlen);
    if (st != KC_JWT_OK)
        return st;
    if (dot2 + 1 == token + len) {
        kc_strlcpyf(err, errlen, "token has no signature");
        return KC_JWT_BAD_SIGNATURE;
    }
    if (!canonical_b64url(dot2 + 1, len - (size_t)(dot2 + 1 - token))) {
        kc_strlcpyf(err, errlen, "token signature is not canonical base64url");
        return KC_JWT_MALFORMED;
    }
    /* Each key in turn (a rotation lists the new key and the old one): the first whose
     * signature holds decides. */
    jwt_t *jwt = NULL;
    int rc = EINVAL;
    for (int i = 0; i < k->nkeys; i++) {
        jwt = NULL;
        rc = jwt_decode(&jwt, token, k->keys[i].pem, k->keys[i].len);
        if (rc == 0 && jwt)
            break;
        jwt_free(jwt);
        jwt = NULL;
    }
    if (rc != 0 || !jwt) {
        jwt_free(jwt);
        kc_strlcpyf(err, errlen, rc == EINVAL ? "token signature or format invalid"
                                              : "token cannot be verified");
        return KC_JWT_BAD_SIGNATURE;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_RS256) {
        jwt_free(jwt);
        kc_strlcpyf(err, errlen, "token algorithm refused (only %s is accepted)", KC_JWT_ALG);
        return KC_JWT_ALG_REFUSED;
    }
    errno = 0;
    long exp = jwt_get_grant_int(jwt, "exp");
    int have_exp = errno == 0;
    errno = 0;
    long nbf = jwt_get_grant_int(jwt, "nbf");
    int have_nbf = errno == 0;
    errno = 0;
    long iat = jwt_get_grant_int(jwt, "iat");
    if (errno != 0)
        iat = 0;
    const char *iss = jwt_get_grant(jwt, "iss");
    const char *sub = jwt_get_grant(jwt, "sub");
    const char *name = jwt_get_grant(jwt, "name");
    if (!have_exp) {
        kc_strlcpyf(err, errlen, "token has no expiry");
        st = KC_JWT_MALFORMED;
    } else if (now_s > (long long)exp + leeway_s) {
        kc_strlcpyf(err, errlen, "token expired");
        st = KC_JWT_EXPIRED;
    } else if (have_nbf && now_s + leeway_s < (long long)nbf) {
        kc_strlcpyf(err, errlen, "token not valid yet");
        st = KC_JWT_NOT_YET_VALID;
    } else if (!iss || strcmp(iss, k->issuer) != 0) {
        kc_strlcpyf(err, errlen, "token issuer refused");
        st = KC_JWT_BAD_ISSUER;
    } else if (!audience_ok(jwt, k->audience)) {
        kc_strlcpyf(err, errlen, "token audience refused");
        st = KC_JWT_BAD_AUDIENCE;
    } else if (!subject_ok(sub)) {
        kc_strlcpyf(err, errlen, "token subject invalid");
        st = KC_JWT_BAD_SUBJECT;
    } else {
        kc_strlcpyf(out->sub, sizeof(out->sub), "%s", sub);
        if (name && strlen(name) <= KC_JWT_NAME_MAX && kc_utf8_valid(name, strlen(name)))
            kc_strlcpyf(out->name, sizeof(out->name), "%s", name);
        out->exp = exp;
        out->iat = iat;
    }
    jwt_free(jwt);
    return st;
}

char *kc_jwt_sign(const kc_jwt_key_t *k, const char *sub, const char *name, long long now_s,
                  long long ttl_s, char *err, size_t errlen)
{
    if (!subject_ok(sub) || (name && strlen(name) > KC_JWT_NAME_MAX) || ttl_s <= 0) {
        kc_strlcpyf(err, errlen, "invalid token subject, name or lifetime");
        return NULL;
    }
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0) {
        kc_strlcpyf(err, errlen, "jwt_new failed");
        return NULL;
    }
    unsigned char rnd[16];
    char jti[sizeof(rnd) * 2 + 1];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(jti, sizeof(jti), rnd, sizeof(rnd));
    char *tok = NULL;
    if (jwt_add_grant(jwt, "iss", k->issuer) || jwt_add_grant(jwt, "aud", k->audience) ||
        jwt_add_grant(jwt, "sub", sub) || (name && jwt_add_grant(jwt, "name", name)) ||
        jwt_add_grant(jwt, "jti", jti) || jwt_add_grant_int(jwt, "iat", (long)now_s) ||
        jwt_add_grant_int(jwt, "nbf", (long)now_s) ||
        jwt_add_grant_int(jwt, "exp", (long)(now_s + ttl_s)) ||
        jwt_set_alg(jwt, JWT_ALG_RS256, k->keys[0].pem, k->keys[0].len)) {
        kc_strlcpyf(err, errlen, "cannot build the token (is the key an RSA private key?)");
    } else if (!(tok = jwt_encode_str(jwt))) {
        kc_strlcpyf(err, errlen, "cannot sign the token (is the key an RSA private key?)");
    }
    jwt_free(jwt);
    if (!tok)
        return NULL;
    /* libjwt allocates with its own allocator (malloc by default); hand back our copy. */
    char *copy = kc_xstrdup(tok);
    free(tok);
    return copy;
}

int kc_jwt_key_fingerprint(const kc_jwt_key_t *k, char out[65])
{
    if (!k || k->nkeys < 1)
        return -1;
    BIO *bio = BIO_new_mem_buf(k->keys[0].pem, k->keys[0].len);
    if (!bio)
        return -1;
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (!pk) {
        (void)BIO_reset(bio);
        pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    }
    BIO_free(bio);
    ERR_clear_error(); /* the first read's failure, when the key is a public one */
    if (!pk)
        return -1;
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(pk, &der);
    EVP_PKEY_free(pk);
    if (len <= 0)
        return -1;
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, der, (unsigned long long)len);
    OPENSSL_free(der);
    sodium_bin2hex(out, 65, h, sizeof(h));
    return 0;
}
