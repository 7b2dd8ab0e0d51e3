/* webpush.c - VAPID headers, RFC 8291 message encryption, subscription checks and Standard
 * Webhooks signatures (kchat/webpush.h).
 *
 * Every primitive is OpenSSL 3's through EVP: ECDH (EVP_PKEY_derive), HKDF (EVP_KDF),
 * AES-128-GCM (EVP_CIPHER), ECDSA P-256 with SHA-256 (EVP_DigestSign), HMAC-SHA256
 * (EVP_MAC), and the curve check of a browser's point (EVP_PKEY_fromdata then
 * EVP_PKEY_public_check). base64 and base64url are libsodium's, as elsewhere in lib/.
 *
 * Each function builds its result in a buffer of its own and appends it to the caller's only
 * once everything succeeded, so a failure leaves the caller's buffer as it was. Secrets that
 * pass through our memory (the ECDH secret, the derived keys, an ephemeral private key, a
 * webhook key, a key file's bytes) are wiped before it is freed. Failures clear OpenSSL's
 * error queue of this thread, so that a later caller (libcurl, libpq) does not read our
 * errors as its own.
 */
#include "kchat/webpush.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kchat/util.h"

#define KEY_FILE_MAX (16 * 1024)
#define SUBJECT_MAX 512
/* base64url of at most a few padding characters more than a point: longer input is refused
 * before it is decoded. */
#define KEY_B64_MAX 128
#define GROUP "prime256v1" /* OpenSSL's name of P-256 */

struct kc_vapid {
    EVP_PKEY *pkey; /* owned; the private key when has_private */
    int has_private;
    char pub_b64[KC_VAPID_PUBLIC_B64_LEN + 1];
};

/* ---- base64url ---- */

/* Decodes base64url s (trailing '=' padding tolerated, anything else refused, including
 * non-zero unused bits: one string per byte string) into out (at most max bytes). 0 with
 * *outlen, or -1. */
static int b64url_decode(const char *s, unsigned char *out, size_t max, size_t *outlen)
{
    size_t n = strnlen(s, KEY_B64_MAX + 1);
    if (n == 0 || n > KEY_B64_MAX)
        return -1;
    for (int pad = 0; pad < 2 && n > 0 && s[n - 1] == '='; pad++)
        n--;
    const char *end = NULL;
    if (sodium_base642bin(out, max, s, n, NULL, outlen, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != s + n)
        return -1;
    return 0;
}

/* Appends base64url without padding of p (n bytes). */
static void b64url_put(kc_buf_t *b, const void *p, size_t n)
{
    size_t room = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    kc_buf_reserve(b, room);
    (void)sodium_bin2base64(b->data + b->len, room, p, n,
                            sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    b->len += strlen(b->data + b->len);
}

/* ---- keys ---- */

/* The uncompressed point of an EC key into out[65]. 0, or -1. */
static int public_point(EVP_PKEY *pk, unsigned char out[KC_WEBPUSH_POINT_LEN])
{
    size_t len = 0;
    /* A key read from a file keeps the form its public point was written in: ask for the
     * uncompressed one, the only form the browsers and push services take. */
    if (EVP_PKEY_set_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                       "uncompressed") != 1 ||
        EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, out, KC_WEBPUSH_POINT_LEN,
                                        &len) != 1 ||
        len != KC_WEBPUSH_POINT_LEN || out[0] != 0x04)
        return -1;
    return 0;
}

static int is_p256(EVP_PKEY *pk)
{
    char name[64];
    size_t len = 0;
    if (!EVP_PKEY_is_a(pk, "EC") ||
        EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name),
                                       &len) != 1)
        return 0;
    return OBJ_sn2nid(name) == NID_X9_62_prime256v1 ||
           EC_curve_nist2nid(name) == NID_X9_62_prime256v1;
}

/* The public key of the point pt (65 bytes), checked to be on P-256 and not the point at
 * infinity; the caller frees it. NULL when it is not a valid point. */
static EVP_PKEY *point_key(const unsigned char pt[KC_WEBPUSH_POINT_LEN])
{
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    char group[] = GROUP;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt,
                                          KC_WEBPUSH_POINT_LEN),
        OSSL_PARAM_construct_end(),
    };
    if (pt[0] != 0x04)
        goto fail;
    /* fromdata refuses a point off the curve already (EC_POINT_oct2point); the public check
     * says so again, and refuses a point of the wrong order. */
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1 || !pk)
        goto fail;
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (!check || EVP_PKEY_public_check(check) != 1)
        goto fail;
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    return pk;
fail:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pk);
    ERR_clear_error();
    return NULL;
}

/* The P-256 key pair of the private scalar priv (32 bytes, big-endian, in [1, n-1]); its
 * uncompressed public point into pub. The caller frees the key. NULL when priv is out of
 * range or OpenSSL fails. */
static EVP_PKEY *scalar_key(const unsigned char priv[32], unsigned char pub[KC_WEBPUSH_POINT_LEN])
{
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    EC_POINT *p = NULL;
    BIGNUM *d = BN_secure_new();
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    if (!g || !d || !BN_bin2bn(priv, 32, d) || BN_is_zero(d) ||
        BN_cmp(d, EC_GROUP_get0_order(g)) >= 0)
        goto fail;
    p = EC_POINT_new(g);
    if (!p || EC_POINT_mul(g, p, d, NULL, NULL, NULL) != 1 ||
        EC_POINT_point2oct(g, p, POINT_CONVERSION_UNCOMPRESSED, pub, KC_WEBPUSH_POINT_LEN,
                           NULL) != KC_WEBPUSH_POINT_LEN)
        goto fail;
    bld = OSSL_PARAM_BLD_new();
    if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, GROUP, 0) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub,
                                         KC_WEBPUSH_POINT_LEN) != 1)
        goto fail;
    /* d is in secure memory, so its copy in params is too, and OSSL_PARAM_free wipes it */
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_KEYPAIR, params) != 1 || !pk)
        goto fail;
    goto done;
fail:
    EVP_PKEY_free(pk);
    pk = NULL;
    ERR_clear_error();
done:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    EC_POINT_free(p);
    BN_clear_free(d);
    EC_GROUP_free(g);
    return pk;
}

/* Never prompts for a passphrase: an encrypted key file is refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

kc_vapid_t *kc_vapid_load(const char *path, int need_private, char *err, size_t errlen)
{
    kc_vapid_t *v = NULL;
    EVP_PKEY *pk = NULL;
    BIO *bio = NULL;
    unsigned char *pem = kc_xmalloc(KEY_FILE_MAX + 1);
    size_t n = 0;
    int has_private = 0;
    unsigned char pub[KC_WEBPUSH_POINT_LEN];

    FILE *f = fopen(path, "rb");
    if (!f) {
        (void)kc_strlcpyf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    n = fread(pem, 1, KEY_FILE_MAX + 1, f);
    int rerr = ferror(f);
    if (fclose(f) != 0)
        rerr = 1;
    if (rerr || n == 0 || n > KEY_FILE_MAX) {
        (void)kc_strlcpyf(err, errlen, "%s: %s", path,
                          rerr     ? "read error"
                          : n == 0 ? "empty file"
                                   : "larger than 16 KiB");
        goto fail;
    }
    /* The private key first (PEM_read skips other blocks, such as the "EC PARAMETERS" of
     * `openssl ecparam -genkey`), then, when a public key will do, an SPKI. */
    bio = BIO_new_mem_buf(pem, (int)n);
    if (!bio) {
        (void)kc_strlcpyf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    has_private = pk != NULL;
    if (!pk && !need_private) {
        BIO_free(bio);
        bio = BIO_new_mem_buf(pem, (int)n);
        if (!bio) {
            (void)kc_strlcpyf(err, errlen, "%s: out of memory", path);
            goto fail;
        }
        pk = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    }
    if (!pk) {
        (void)kc_strlcpyf(err, errlen,
                          need_private ? "%s: no private key (a PEM EC P-256 private key, "
                                         "PKCS#8 or SEC1, not encrypted, is required)"
                                       : "%s: no PEM public or private key",
                          path);
        goto fail;
    }
    if (!is_p256(pk)) {
        (void)kc_strlcpyf(err, errlen, "%s: not an EC P-256 (prime256v1) key", path);
        goto fail;
    }
    if (public_point(pk, pub) != 0) {
        (void)kc_strlcpyf(err, errlen, "%s: cannot read the public point", path);
        goto fail;
    }
    v = kc_xcalloc(1, sizeof(*v));
    v->pkey = pk;
    pk = NULL;
    v->has_private = has_private;
    (void)sodium_bin2base64(v->pub_b64, sizeof(v->pub_b64), pub, sizeof(pub),
                            sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    goto done;
fail:
    ERR_clear_error();
done:
    BIO_free(bio);
    EVP_PKEY_free(pk);
    OPENSSL_cleanse(pem, KEY_FILE_MAX + 1);
    free(pem);
    return v;
}

void kc_vapid_free(kc_vapid_t *v)
{
    if (!v)
        return;
    EVP_PKEY_free(v->pkey);
    free(v);
}

int kc_vapid_has_private(const kc_vapid_t *v)
{
    return v->has_private;
}

const char *kc_vapid_public_b64(const kc_vapid_t *v)
{
    return v->pub_b64;
}

/* ---- URLs ---- */

typedef struct {
    int https;
    const char *host; /* as written; an IPv6 address with its brackets */
    size_t hostlen;
    long port;        /* 0 when none is written */
    const char *rest; /* '/', '?', '#' or the end */
} url_t;

static int host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

/* Splits an absolute http(s) URL; *why says what is wrong with it. 0, or -1. */
static int url_parse(const char *url, url_t *u, const char **why)
{
    memset(u, 0, sizeof(*u));
    for (const unsigned char *c = (const unsigned char *)url; *c; c++) {
        if (*c <= 0x20 || *c >= 0x7f) {
            *why = "endpoint must be a URL of printable ASCII without white space";
            return -1;
        }
    }
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0) {
        u->https = 1;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else {
        *why = "endpoint must be an https:// URL";
        return -1;
    }
    size_t alen = strcspn(p, "/?#");
    if (memchr(p, '@', alen)) {
        *why = "endpoint must not carry user info";
        return -1;
    }
    const char *a_end = p + alen, *h_end;
    if (*p == '[') {
        const char *close = memchr(p, ']', alen);
        if (!close || close == p + 1) {
            *why = "endpoint has a bad IPv6 address";
            return -1;
        }
        for (const char *c = p + 1; c < close; c++) {
            if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') ||
                  (*c >= 'A' && *c <= 'F') || *c == ':' || *c == '.')) {
                *why = "endpoint has a bad IPv6 address";
                return -1;
            }
        }
        h_end = close + 1;
    } else {
        h_end = p;
        while (h_end < a_end && *h_end != ':')
            h_end++;
        for (const char *c = p; c < h_end; c++) {
            if (!host_char((unsigned char)*c)) {
                *why = "endpoint has a bad host name";
                return -1;
            }
        }
    }
    if (h_end == p) {
        *why = "endpoint has no host";
        return -1;
    }
    u->host = p;
    u->hostlen = (size_t)(h_end - p);
    if (h_end < a_end) {
        /* 1 to 5 digits, no leading zero: a browser's URL serialiser writes the number so,
         * and the origin in a VAPID "aud" is then the URL's own spelling */
        if (*h_end != ':' || h_end + 1 == a_end || a_end - (h_end + 1) > 5 || h_end[1] == '0') {
            *why = "endpoint has a bad port";
            return -1;
        }
        long port = 0;
        for (const char *c = h_end + 1; c < a_end; c++) {
            if (*c < '0' || *c > '9') {
                *why = "endpoint has a bad port";
                return -1;
            }
            port = port * 10 + (*c - '0');
        }
        if (port < 1 || port > 65535) {
            *why = "endpoint has a bad port";
            return -1;
        }
        u->port = port;
    }
    u->rest = a_end;
    return 0;
}

static int is_loopback(const url_t *u)
{
    char h[64];
    if (u->hostlen >= sizeof(h))
        return 0;
    memcpy(h, u->host, u->hostlen);
    h[u->hostlen] = '\0';
    if (strcasecmp(h, "localhost") == 0)
        return 1;
    if (h[0] == '[') {
        struct in6_addr a6;
        h[u->hostlen - 1] = '\0';
        return inet_pton(AF_INET6, h + 1, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    /* glibc's inet_pton takes dotted decimal only: no octal, hex or shortened forms that
     * would let "0x7f.1" pass for loopback here and mean something else to a resolver */
    struct in_addr a4;
    return inet_pton(AF_INET, h, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

int kc_webpush_endpoint_ok(const char *url, int allow_http, char *err, size_t errlen)
{
    const char *why = NULL;
    url_t u;
    size_t n = url ? strnlen(url, KC_WEBPUSH_ENDPOINT_MAX + 1) : 0;
    if (n == 0)
        why = "endpoint must be an https:// URL";
    else if (n > KC_WEBPUSH_ENDPOINT_MAX)
        why = "endpoint is longer than 2048 bytes";
    else if (url_parse(url, &u, &why) != 0)
        ; /* why is set */
    else if (*u.rest != '/')
        why = "endpoint must be https://host[:port]/path";
    else if (!u.https && !allow_http)
        why = "endpoint must be an https:// URL";
    else if (!u.https && !is_loopback(&u))
        why = "an http:// endpoint must be on a loopback host (127.0.0.0/8, [::1], localhost)";
    if (!why)
        return 0;
    (void)kc_strlcpyf(err, errlen, "%s", why);
    return -1;
}

/* ---- VAPID ---- */

/* Appends the origin of u as RFC 6454 serialises it: scheme and host in lower case, the
 * scheme's default port left out. */
static void origin_put(kc_buf_t *b, const url_t *u)
{
    kc_buf_puts(b, u->https ? "https://" : "http://");
    for (size_t i = 0; i < u->hostlen; i++) {
        char c = u->host[i];
        kc_buf_putc(b, (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c);
    }
    if (u->port && u->port != (u->https ? 443 : 80))
        kc_buf_printf(b, ":%ld", u->port);
}

static int subject_ok(const char *s)
{
    size_t n = s ? strnlen(s, SUBJECT_MAX + 1) : 0;
    if (n == 0 || n > SUBJECT_MAX ||
        (strncasecmp(s, "mailto:", 7) != 0 && strncasecmp(s, "https:", 6) != 0))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

/* ES256 of data: the JWS signature, r || s of 32 bytes each, into sig. 0, or -1. */
static int es256(EVP_PKEY *pk, const char *data, size_t len, unsigned char sig[64])
{
    int rc = -1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ECDSA_SIG *es = NULL;
    unsigned char der[128];
    size_t derlen = sizeof(der);
    if (!md || EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, pk, NULL) != 1 ||
        EVP_DigestSign(md, der, &derlen, (const unsigned char *)data, len) != 1)
        goto fail;
    /* OpenSSL writes the DER ECDSA-Sig-Value; JWS wants the two integers side by side */
    const unsigned char *p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (!es)
        goto fail;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(es, &r, &s);
    if (!r || !s || BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32)
        goto fail;
    rc = 0;
fail:
    if (rc != 0)
        ERR_clear_error();
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    return rc;
}

int kc_vapid_header(const kc_vapid_t *v, const char *endpoint_url, const char *subject,
                    long long exp_s, kc_buf_t *out)
{
    int rc = -1;
    kc_buf_t jwt = {0}, claims = {0};
    url_t u;
    const char *why;
    unsigned char sig[64];
    if (!v || !v->has_private || !endpoint_url || exp_s <= 0 || !subject_ok(subject) ||
        strnlen(endpoint_url, KC_WEBPUSH_ENDPOINT_MAX + 1) > KC_WEBPUSH_ENDPOINT_MAX ||
        url_parse(endpoint_url, &u, &why) != 0)
        goto fail;
    kc_buf_puts(&claims, "{\"aud\":\"");
    origin_put(&claims, &u);
    kc_buf_printf(&claims, "\",\"exp\":%lld,\"sub\":\"", exp_s);
    kc_buf_json_str(&claims, subject, strlen(subject));
    kc_buf_puts(&claims, "\"}");
    static const char header[] = "{\"typ\":\"JWT\",\"alg\":\"ES256\"}";
    b64url_put(&jwt, header, sizeof(header) - 1);
    kc_buf_putc(&jwt, '.');
    b64url_put(&jwt, claims.data, claims.len);
    if (es256(v->pkey, jwt.data, jwt.len, sig) != 0)
        goto fail;
    kc_buf_putc(&jwt, '.');
    b64url_put(&jwt, sig, sizeof(sig));
    kc_buf_printf(out, "vapid t=%s, k=%s", jwt.data, v->pub_b64);
    rc = 0;
fail:
    kc_buf_free(&jwt);
    kc_buf_free(&claims);
    return rc;
}

/* ---- subscriptions ---- */

/* Decodes and checks a subscription's keys; err says what is wrong. 0, or -1. */
static int decode_keys(const char *p256dh, const char *auth, unsigned char ua[KC_WEBPUSH_POINT_LEN],
                       unsigned char secret[KC_WEBPUSH_AUTH_LEN], char *err, size_t errlen)
{
    unsigned char buf[KEY_B64_MAX];
    size_t n = 0;
    const char *why = NULL;
    if (!p256dh)
        why = "p256dh is missing";
    else if (b64url_decode(p256dh, buf, sizeof(buf), &n) != 0)
        why = "p256dh is not base64url";
    else if (n != KC_WEBPUSH_POINT_LEN || buf[0] != 0x04)
        why = "p256dh must be a 65-byte uncompressed P-256 point";
    if (!why) {
        memcpy(ua, buf, KC_WEBPUSH_POINT_LEN);
        if (!auth)
            why = "auth is missing";
        else if (b64url_decode(auth, buf, sizeof(buf), &n) != 0)
            why = "auth is not base64url";
        else if (n != KC_WEBPUSH_AUTH_LEN)
            why = "auth must be 16 bytes";
        else
            memcpy(secret, buf, KC_WEBPUSH_AUTH_LEN);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    if (!why)
        return 0;
    if (err)
        (void)kc_strlcpyf(err, errlen, "%s", why);
    return -1;
}

int kc_webpush_keys_ok(const char *p256dh, const char *auth, char *err, size_t errlen)
{
    unsigned char ua[KC_WEBPUSH_POINT_LEN], secret[KC_WEBPUSH_AUTH_LEN];
    if (decode_keys(p256dh, auth, ua, secret, err, errlen) != 0)
        return -1;
    OPENSSL_cleanse(secret, sizeof(secret));
    EVP_PKEY *pk = point_key(ua);
    if (!pk) {
        if (err)
            (void)kc_strlcpyf(err, errlen, "p256dh is not a P-256 public key");
        return -1;
    }
    EVP_PKEY_free(pk);
    return 0;
}

/* ---- encryption ---- */

/* HKDF-SHA256 (RFC 5869, extract then expand) of ikm under salt with info, outlen bytes. */
static int hkdf(const unsigned char *salt, size_t saltlen, const unsigned char *ikm,
                size_t ikmlen, const void *info, size_t infolen, unsigned char *out,
                size_t outlen)
{
    int rc = -1;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen),
        OSSL_PARAM_construct_end(),
    };
    if (!ctx || EVP_KDF_derive(ctx, out, outlen, params) != 1)
        goto fail;
    rc = 0;
fail:
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

/* The body of RFC 8291 section 3.4 / RFC 8188 section 2 for the ephemeral key eph (its point
 * eph_pub), appended to out. 0, or -1 (out unchanged). */
static int encrypt_body(const unsigned char ua[KC_WEBPUSH_POINT_LEN],
                        const unsigned char secret[KC_WEBPUSH_AUTH_LEN], const void *plain,
                        size_t len, const unsigned char salt[16], EVP_PKEY *eph,
                        const unsigned char eph_pub[KC_WEBPUSH_POINT_LEN], kc_buf_t *out)
{
    int rc = -1;
    EVP_PKEY *peer = NULL;
    EVP_PKEY_CTX *dctx = NULL;
    EVP_CIPHER_CTX *cctx = NULL;
    kc_buf_t body = {0};
    unsigned char ecdh[32], ikm[32], cek[16], nonce[12];
    unsigned char key_info[14 + 2 * KC_WEBPUSH_POINT_LEN];
    size_t ecdhlen = sizeof(ecdh);
    if (len > KC_WEBPUSH_MAX_PLAIN || (len && !plain))
        goto fail;

    /* ecdh_secret = ECDH(as_private, ua_public) */
    peer = point_key(ua);
    dctx = peer ? EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL) : NULL;
    if (!dctx || EVP_PKEY_derive_init(dctx) != 1 || EVP_PKEY_derive_set_peer(dctx, peer) != 1 ||
        EVP_PKEY_derive(dctx, ecdh, &ecdhlen) != 1 || ecdhlen != sizeof(ecdh))
        goto fail;
    /* IKM = HKDF(auth_secret, ecdh_secret, "WebPush: info" 0x00 ua_public as_public, 32) */
    memcpy(key_info, "WebPush: info", 14); /* with its NUL: the 0x00 separator */
    memcpy(key_info + 14, ua, KC_WEBPUSH_POINT_LEN);
    memcpy(key_info + 14 + KC_WEBPUSH_POINT_LEN, eph_pub, KC_WEBPUSH_POINT_LEN);
    static const char cek_info[] = "Content-Encoding: aes128gcm"; /* sizeof: with the 0x00 */
    static const char nonce_info[] = "Content-Encoding: nonce";
    if (hkdf(secret, KC_WEBPUSH_AUTH_LEN, ecdh, sizeof(ecdh), key_info, sizeof(key_info), ikm,
             sizeof(ikm)) != 0 ||
        /* CEK = HKDF(salt, IKM, cek_info, 16); NONCE = HKDF(salt, IKM, nonce_info, 12) */
        hkdf(salt, 16, ikm, sizeof(ikm), cek_info, sizeof(cek_info), cek, sizeof(cek)) != 0 ||
        hkdf(salt, 16, ikm, sizeof(ikm), nonce_info, sizeof(nonce_info), nonce,
             sizeof(nonce)) != 0)
        goto fail;

    /* header: salt | rs | idlen | keyid */
    unsigned char rs[4] = {(unsigned char)(KC_WEBPUSH_RS >> 24),
                           (unsigned char)(KC_WEBPUSH_RS >> 16),
                           (unsigned char)(KC_WEBPUSH_RS >> 8), (unsigned char)KC_WEBPUSH_RS};
    unsigned char idlen = KC_WEBPUSH_POINT_LEN;
    kc_buf_reserve(&body, KC_WEBPUSH_HEADER_LEN + len + 1 + 16);
    kc_buf_append(&body, salt, 16);
    kc_buf_append(&body, rs, sizeof(rs));
    kc_buf_append(&body, &idlen, 1);
    kc_buf_append(&body, eph_pub, KC_WEBPUSH_POINT_LEN);

    /* the one record: AES-128-GCM(plain || 0x02), the nonce as is (sequence number 0), the
     * 16-byte tag after it */
    static const unsigned char delimiter = 0x02;
    unsigned char *dst = (unsigned char *)body.data + body.len;
    int n = 0, total = 0;
    cctx = EVP_CIPHER_CTX_new();
    if (!cctx || EVP_EncryptInit_ex2(cctx, EVP_aes_128_gcm(), cek, nonce, NULL) != 1)
        goto fail;
    if (len && EVP_EncryptUpdate(cctx, dst, &n, plain, (int)len) != 1)
        goto fail;
    total += n;
    if (EVP_EncryptUpdate(cctx, dst + total, &n, &delimiter, 1) != 1)
        goto fail;
    total += n;
    if (EVP_EncryptFinal_ex(cctx, dst + total, &n) != 1)
        goto fail;
    total += n;
    if ((size_t)total != len + 1 ||
        EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_AEAD_GET_TAG, 16, dst + total) != 1)
        goto fail;
    body.len += (size_t)total + 16;
    body.data[body.len] = '\0';
    kc_buf_append(out, body.data, body.len);
    rc = 0;
fail:
    if (rc != 0)
        ERR_clear_error();
    OPENSSL_cleanse(ecdh, sizeof(ecdh));
    OPENSSL_cleanse(ikm, sizeof(ikm));
    OPENSSL_cleanse(cek, sizeof(cek));
    OPENSSL_cleanse(nonce, sizeof(nonce));
    EVP_CIPHER_CTX_free(cctx);
    EVP_PKEY_CTX_free(dctx);
    EVP_PKEY_free(peer);
    kc_buf_free(&body);
    return rc;
}

int kc_webpush_encrypt_with(const char *p256dh, const char *auth, const void *plain, size_t len,
                            const unsigned char salt[16], const unsigned char eph_priv[32],
                            kc_buf_t *out)
{
    unsigned char ua[KC_WEBPUSH_POINT_LEN], secret[KC_WEBPUSH_AUTH_LEN], pub[KC_WEBPUSH_POINT_LEN];
    int rc = -1;
    EVP_PKEY *eph = NULL;
    if (!salt || !eph_priv || decode_keys(p256dh, auth, ua, secret, NULL, 0) != 0)
        goto fail;
    eph = scalar_key(eph_priv, pub);
    if (!eph)
        goto fail;
    rc = encrypt_body(ua, secret, plain, len, salt, eph, pub, out);
fail:
    OPENSSL_cleanse(secret, sizeof(secret));
    EVP_PKEY_free(eph);
    return rc;
}

int kc_webpush_encrypt(const char *p256dh, const char *auth, const void *plain, size_t len,
                       kc_buf_t *out)
{
    unsigned char ua[KC_WEBPUSH_POINT_LEN], secret[KC_WEBPUSH_AUTH_LEN], pub[KC_WEBPUSH_POINT_LEN];
    unsigned char salt[16];
    int rc = -1;
    EVP_PKEY *eph = NULL;
    if (decode_keys(p256dh, auth, ua, secret, NULL, 0) != 0)
        goto fail;
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        goto fail;
    eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!eph || public_point(eph, pub) != 0)
        goto fail;
    rc = encrypt_body(ua, secret, plain, len, salt, eph, pub, out);
fail:
    if (rc != 0)
        ERR_clear_error();
    OPENSSL_cleanse(secret, sizeof(secret));
    EVP_PKEY_free(eph);
    return rc;
}

/* ---- Standard Webhooks ---- */

int kc_webhook_sign(const char *secret, const char *msg_id, long long ts, const void *body,
                    size_t len, kc_buf_t *out)
{
    int rc = -1;
    unsigned char *key = NULL;
    size_t keylen = 0, cap = 0;
    EVP_MAC *mac = NULL;
    EVP_MAC_CTX *ctx = NULL;
    unsigned char sum[32];
    size_t sumlen = 0;
    char ts_text[24];
    if (!secret || !*secret || !msg_id || !*msg_id || (len && !body))
        goto fail;
    if (strncmp(secret, "whsec_", 6) == 0) {
        const char *b64 = secret + 6;
        size_t n = strlen(b64);
        for (int pad = 0; pad < 2 && n > 0 && b64[n - 1] == '='; pad++)
            n--;
        cap = n / 4 * 3 + 3;
        key = kc_xmalloc(cap);
        const char *end = NULL;
        if (n == 0 ||
            sodium_base642bin(key, cap, b64, n, NULL, &keylen, &end,
                              sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
            end != b64 + n || keylen == 0)
            goto fail;
    } else {
        keylen = cap = strlen(secret);
        key = kc_xmalloc(cap);
        memcpy(key, secret, keylen);
    }
    (void)kc_strlcpyf(ts_text, sizeof(ts_text), "%lld", ts);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    /* the signed content is "<msg_id>.<timestamp>.<body>", fed in its parts */
    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    if (!ctx || EVP_MAC_init(ctx, key, keylen, params) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)msg_id, strlen(msg_id)) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)".", 1) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)ts_text, strlen(ts_text)) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)".", 1) != 1 ||
        (len && EVP_MAC_update(ctx, body, len) != 1) ||
        EVP_MAC_final(ctx, sum, &sumlen, sizeof(sum)) != 1 || sumlen != sizeof(sum))
        goto fail;
    char b64sum[48]; /* 44 characters and the NUL */
    _Static_assert(sizeof(b64sum) >= sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL),
                   "room for a SHA-256 in base64");
    (void)sodium_bin2base64(b64sum, sizeof(b64sum), sum, sizeof(sum),
                            sodium_base64_VARIANT_ORIGINAL);
    kc_buf_printf(out, "v1,%s", b64sum);
    rc = 0;
fail:
    if (rc != 0)
        ERR_clear_error();
    if (key) {
        OPENSSL_cleanse(key, cap);
        free(key);
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}
