/* test_webpush.c - lib/webpush: RFC 8291 Appendix A's example reproduced byte for byte, a
 * push decrypted as the browser does it, VAPID headers parsed back and their ES256 signature
 * verified by OpenSSL against the public key, the origin put in "aud", the key files taken
 * and refused, the checks of a subscription's keys and endpoint, and Standard Webhooks'
 * published signature.
 *
 * The webhook vector is the one of the Standard Webhooks libraries' tests; it was checked
 * independently with Python:
 *
 *   import base64, hashlib, hmac
 *   key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
 *   msg = b'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}'
 *   base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest())
 *   # b'g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kchat/buf.h"
#include "kchat/util.h"
#include "kchat/webpush.h"

/* RFC 8291 section 5 and Appendix A */
#define RFC_PLAIN "When I grow up, I want to be a watermelon"
#define RFC_AS_PRIVATE "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
#define RFC_AS_PUBLIC                                                                            \
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
#define RFC_UA_PRIVATE "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
#define RFC_UA_PUBLIC                                                                            \
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
#define RFC_SALT "DGv6ra1nlYgDCS1FRnbzlw"
#define RFC_AUTH "BTBZMqHH6r4Tts7J_aSIgg"
#define RFC_BODY                                                                                 \
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAm" \
    "S6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj" \
    "_Qulcy4a-fN"

static char dir[] = "/tmp/kc-webpush-XXXXXX";

/* base64url (no padding) decoded into out; returns the length. */
static size_t unb64url(const char *s, unsigned char *out, size_t max)
{
    size_t n = 0;
    const char *end = NULL;
    assert_int_equal(sodium_base642bin(out, max, s, strlen(s), NULL, &n, &end,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    assert_ptr_equal(end, s + strlen(s));
    return n;
}

static void b64url(const unsigned char *p, size_t n, char *out, size_t outlen)
{
    sodium_bin2base64(out, outlen, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static EVP_PKEY *p256_new(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    return k;
}

static void point_of(EVP_PKEY *k, unsigned char pt[65])
{
    size_t len = 0;
    assert_int_equal(
        EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, 65, &len), 1);
    assert_int_equal(len, 65);
}

/* dir/name written with key k: private PKCS#8, private SEC1 ("EC PRIVATE KEY"), public SPKI,
 * or PKCS#8 encrypted with a passphrase. */
enum { PKCS8, SEC1, SPKI, ENCRYPTED };
static const char *key_file(EVP_PKEY *k, const char *name, int form)
{
    static char path[8][128];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 128, "%s/%s", dir, name);
    BIO *b = BIO_new_file(p, "w");
    assert_non_null(b);
    int ok = 0;
    switch (form) {
    case PKCS8: ok = PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL); break;
    case SEC1: ok = PEM_write_bio_PrivateKey_traditional(b, k, NULL, NULL, 0, NULL, NULL); break;
    case SPKI: ok = PEM_write_bio_PUBKEY(b, k); break;
    case ENCRYPTED:
        ok = PEM_write_bio_PKCS8PrivateKey(b, k, EVP_aes_128_cbc(), "secret", 6, NULL, NULL);
        break;
    }
    assert_int_equal(ok, 1);
    BIO_free(b);
    return p;
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) && sodium_init() >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- RFC 8291 ---- */

static void test_rfc8291_appendix_a(void **state)
{
    (void)state;
    unsigned char salt[16], priv[32], want[256], pub[65];
    assert_int_equal(unb64url(RFC_SALT, salt, sizeof(salt)), 16);
    assert_int_equal(unb64url(RFC_AS_PRIVATE, priv, sizeof(priv)), 32);
    size_t wantlen = unb64url(RFC_BODY, want, sizeof(want));
    assert_int_equal(wantlen, KC_WEBPUSH_HEADER_LEN + strlen(RFC_PLAIN) + 1 + 16);

    char err[128] = "";
    assert_int_equal(kc_webpush_keys_ok(RFC_UA_PUBLIC, RFC_AUTH, err, sizeof(err)), 0);
    kc_buf_t out = {0};
    kc_buf_puts(&out, "before:"); /* appended to, not replaced */
    assert_int_equal(kc_webpush_encrypt_with(RFC_UA_PUBLIC, RFC_AUTH, RFC_PLAIN,
                                             strlen(RFC_PLAIN), salt, priv, &out),
                     0);
    assert_int_equal(out.len, 7 + wantlen);
    assert_memory_equal(out.data, "before:", 7);
    assert_memory_equal(out.data + 7, want, wantlen);
    /* the keyid is the sender's public key of the example */
    assert_int_equal(unb64url(RFC_AS_PUBLIC, pub, sizeof(pub)), 65);
    assert_memory_equal(out.data + 7 + 21, pub, 65);
    char text[300];
    b64url((unsigned char *)out.data + 7, out.len - 7, text, sizeof(text));
    assert_string_equal(text, RFC_BODY);
    kc_buf_free(&out);

    /* a private scalar of 0, or of n or more, is no key */
    unsigned char zero[32] = {0}, big[32];
    memset(big, 0xff, sizeof(big));
    assert_int_equal(kc_webpush_encrypt_with(RFC_UA_PUBLIC, RFC_AUTH, "x", 1, salt, zero, &out),
                     -1);
    assert_int_equal(kc_webpush_encrypt_with(RFC_UA_PUBLIC, RFC_AUTH, "x", 1, salt, big, &out),
                     -1);
    assert_int_equal(out.len, 0);
    kc_buf_free(&out);
}

static void hkdf(const unsigned char *salt, size_t saltlen, const unsigned char *ikm,
                 size_t ikmlen, const void *info, size_t infolen, unsigned char *out,
                 size_t outlen)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    char digest[] = "SHA256";
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen),
        OSSL_PARAM_construct_end(),
    };
    assert_int_equal(EVP_KDF_derive(ctx, out, outlen, p), 1);
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
}

/* The browser's side (RFC 8291 section 3.4, read the other way): decrypts body for the key
 * pair ua and auth secret, returns the plaintext's length (into plain). */
static size_t browser_decrypt(EVP_PKEY *ua, const unsigned char auth[16],
                              const unsigned char *body, size_t len, unsigned char *plain)
{
    assert_true(len >= KC_WEBPUSH_HEADER_LEN + 17);
    const unsigned char *salt = body, *as_pub = body + 21, *rec = body + KC_WEBPUSH_HEADER_LEN;
    size_t reclen = len - KC_WEBPUSH_HEADER_LEN;
    uint32_t rs = (uint32_t)body[16] << 24 | (uint32_t)body[17] << 16 |
                  (uint32_t)body[18] << 8 | body[19];
    assert_int_equal(rs, 4096);
    assert_int_equal(body[20], 65);
    assert_true(reclen <= rs);

    /* the sender's point as a key */
    char group[] = "prime256v1";
    OSSL_PARAM kp[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)as_pub, 65),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *fc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *as = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(fc), 1);
    assert_int_equal(EVP_PKEY_fromdata(fc, &as, EVP_PKEY_PUBLIC_KEY, kp), 1);
    EVP_PKEY_CTX_free(fc);
    unsigned char ecdh[32];
    size_t elen = sizeof(ecdh);
    EVP_PKEY_CTX *dc = EVP_PKEY_CTX_new_from_pkey(NULL, ua, NULL);
    assert_int_equal(EVP_PKEY_derive_init(dc), 1);
    assert_int_equal(EVP_PKEY_derive_set_peer(dc, as), 1);
    assert_int_equal(EVP_PKEY_derive(dc, ecdh, &elen), 1);
    EVP_PKEY_CTX_free(dc);
    EVP_PKEY_free(as);

    unsigned char info[14 + 130], ikm[32], cek[16], nonce[12], ua_pub[65];
    point_of(ua, ua_pub);
    memcpy(info, "WebPush: info", 14);
    memcpy(info + 14, ua_pub, 65);
    memcpy(info + 79, as_pub, 65);
    hkdf(auth, 16, ecdh, 32, info, sizeof(info), ikm, 32);
    hkdf(salt, 16, ikm, 32, "Content-Encoding: aes128gcm", 28, cek, 16);
    hkdf(salt, 16, ikm, 32, "Content-Encoding: nonce", 24, nonce, 12);

    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, m = 0;
    assert_int_equal(EVP_DecryptInit_ex2(c, EVP_aes_128_gcm(), cek, nonce, NULL), 1);
    assert_int_equal(EVP_DecryptUpdate(c, plain, &n, rec, (int)(reclen - 16)), 1);
    assert_int_equal(
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, (void *)(rec + reclen - 16)), 1);
    assert_int_equal(EVP_DecryptFinal_ex(c, plain + n, &m), 1); /* the tag holds */
    EVP_CIPHER_CTX_free(c);
    n += m;
    assert_true(n >= 1);
    assert_int_equal(plain[n - 1], 0x02); /* the last record's delimiter, no padding */
    return (size_t)n - 1;
}

static void test_encrypt_round_trip(void **state)
{
    (void)state;
    EVP_PKEY *ua = p256_new();
    unsigned char pt[65], auth[16];
    point_of(ua, pt);
    assert_int_equal(RAND_bytes(auth, sizeof(auth)), 1);
    char p256dh[100], auth64[40];
    b64url(pt, sizeof(pt), p256dh, sizeof(p256dh));
    b64url(auth, sizeof(auth), auth64, sizeof(auth64));

    static unsigned char plain[KC_WEBPUSH_MAX_PLAIN + 1], got[KC_WEBPUSH_MAX_PLAIN + 2];
    assert_int_equal(RAND_bytes(plain, sizeof(plain)), 1);
    size_t sizes[] = {0, 1, 41, 1000, KC_WEBPUSH_MAX_PLAIN};
    for (size_t i = 0; i < KC_ARRAY_LEN(sizes); i++) {
        kc_buf_t a = {0}, b = {0};
        assert_int_equal(kc_webpush_encrypt(p256dh, auth64, plain, sizes[i], &a), 0);
        assert_int_equal(kc_webpush_encrypt(p256dh, auth64, plain, sizes[i], &b), 0);
        assert_int_equal(a.len, KC_WEBPUSH_HEADER_LEN + sizes[i] + 17);
        /* a fresh salt and a fresh ephemeral key each time */
        assert_memory_not_equal(a.data, b.data, 16);
        assert_memory_not_equal(a.data + 21, b.data + 21, 65);
        assert_int_equal(browser_decrypt(ua, auth, (unsigned char *)a.data, a.len, got),
                         sizes[i]);
        if (sizes[i])
            assert_memory_equal(got, plain, sizes[i]);
        assert_int_equal(browser_decrypt(ua, auth, (unsigned char *)b.data, b.len, got),
                         sizes[i]);
        kc_buf_free(&a);
        kc_buf_free(&b);
    }
    /* the largest body is 4096 bytes, what every push service must take */
    kc_buf_t out = {0};
    assert_int_equal(kc_webpush_encrypt(p256dh, auth64, plain, KC_WEBPUSH_MAX_PLAIN, &out), 0);
    assert_int_equal(out.len, 4096);
    assert_int_equal(KC_WEBPUSH_MAX_PLAIN, 3993);
    kc_buf_free(&out);
    /* refused, leaving out as it was */
    kc_buf_puts(&out, "kept");
    assert_int_equal(kc_webpush_encrypt(p256dh, auth64, plain, KC_WEBPUSH_MAX_PLAIN + 1, &out),
                     -1);
    assert_int_equal(kc_webpush_encrypt(p256dh, "AAAA", plain, 10, &out), -1);
    assert_int_equal(kc_webpush_encrypt("BAAA", auth64, plain, 10, &out), -1);
    assert_int_equal(kc_webpush_encrypt(p256dh, auth64, NULL, 10, &out), -1);
    assert_string_equal(out.data, "kept");
    assert_int_equal(out.len, 4);
    kc_buf_free(&out);
    EVP_PKEY_free(ua);
}

/* ---- subscription checks ---- */

static void test_keys_ok(void **state)
{
    (void)state;
    char err[128];
    unsigned char pt[65];
    char text[200];
    assert_int_equal(kc_webpush_keys_ok(RFC_UA_PUBLIC, RFC_AUTH, err, sizeof(err)), 0);
    /* padding tolerated */
    assert_int_equal(kc_webpush_keys_ok(RFC_UA_PUBLIC "=", RFC_AUTH "==", err, sizeof(err)), 0);

    struct {
        const char *p256dh, *auth, *why;
    } bad[] = {
        {NULL, RFC_AUTH, "p256dh is missing"},
        {RFC_UA_PUBLIC, NULL, "auth is missing"},
        {"", RFC_AUTH, "p256dh is not base64url"},
        {"BCVxsr7N+eNgVRqvHtD0zTZsEc6/VV", RFC_AUTH, "p256dh is not base64url"}, /* std alphabet */
        {"BCVx sr7N", RFC_AUTH, "p256dh is not base64url"},
        {RFC_UA_PUBLIC "===", RFC_AUTH, "p256dh is not base64url"},
        {RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J_aSIgg===", "auth is not base64url"},
        {RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J_aSIgh", "auth is not base64url"}, /* unused bits set */
        {RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J_aSI", "auth must be 16 bytes"},    /* 15 */
        {RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J_aSIggAA", "auth must be 16 bytes"}, /* 18 */
        {RFC_UA_PUBLIC, "", "auth is not base64url"},
    };
    for (size_t i = 0; i < KC_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_int_equal(kc_webpush_keys_ok(bad[i].p256dh, bad[i].auth, err, sizeof(err)), -1);
        assert_string_equal(err, bad[i].why);
    }

    /* lengths: 64 and 66 bytes; a compressed point (33 bytes, 0x02) */
    assert_int_equal(unb64url(RFC_UA_PUBLIC, pt, sizeof(pt)), 65);
    b64url(pt, 64, text, sizeof(text));
    assert_int_equal(kc_webpush_keys_ok(text, RFC_AUTH, err, sizeof(err)), -1);
    assert_string_equal(err, "p256dh must be a 65-byte uncompressed P-256 point");
    unsigned char longer[66];
    memcpy(longer, pt, 65);
    longer[65] = 0;
    b64url(longer, 66, text, sizeof(text));
    assert_int_equal(kc_webpush_keys_ok(text, RFC_AUTH, err, sizeof(err)), -1);
    unsigned char comp[33];
    comp[0] = 0x02 | (pt[64] & 1);
    memcpy(comp + 1, pt + 1, 32);
    b64url(comp, 33, text, sizeof(text));
    assert_int_equal(kc_webpush_keys_ok(text, RFC_AUTH, err, sizeof(err)), -1);
    /* 65 bytes that do not start with 0x04 */
    unsigned char odd[65];
    memcpy(odd, pt, 65);
    odd[0] = 0x06;
    b64url(odd, 65, text, sizeof(text));
    assert_int_equal(kc_webpush_keys_ok(text, RFC_AUTH, err, sizeof(err)), -1);
    assert_string_equal(err, "p256dh must be a 65-byte uncompressed P-256 point");

    /* off the curve: y changed, the point at (0, 0), x and y of all ones */
    unsigned char off[65];
    memcpy(off, pt, 65);
    off[64] ^= 1;
    b64url(off, 65, text, sizeof(text));
    assert_int_equal(kc_webpush_keys_ok(text, RFC_AUTH, err, sizeof(err)), -1);
    assert_string_equal(err, "p256dh is not a P-256 public key");
    memset(off + 1, 0, 64);
    b64url(off, 65, text, sizeof(text));
    assert_int_equal(kc_webpush_keys_ok(text, RFC_AUTH, err, sizeof(err)), -1);
    assert_string_equal(err, "p256dh is not a P-256 public key");
    memset(off + 1, 0xff, 64);
    b64url(off, 65, text, sizeof(text));
    assert_int_equal(kc_webpush_keys_ok(text, RFC_AUTH, err, sizeof(err)), -1);
    assert_string_equal(err, "p256dh is not a P-256 public key");
    /* ... and a point of the curve's own, freshly made, passes */
    EVP_PKEY *k = p256_new();
    point_of(k, pt);
    EVP_PKEY_free(k);
    b64url(pt, 65, text, sizeof(text));
    assert_int_equal(kc_webpush_keys_ok(text, RFC_AUTH, err, sizeof(err)), 0);
    /* a NULL err is allowed */
    assert_int_equal(kc_webpush_keys_ok("x", RFC_AUTH, NULL, 0), -1);
}

static void test_endpoint_ok(void **state)
{
    (void)state;
    char err[160];
    const char *good[] = {
        "https://fcm.googleapis.com/fcm/send/dGhpcyBpcyBub3QgYSByZWFsIHRva2Vu:APA91b",
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk",
        "https://web.push.apple.com/QGuQyavXutnMA",
        "https://push.example.net:8443/x?y=1#z",
        "HTTPS://Push.Example.NET/p",
        "https://[2001:db8::1]:9443/p",
        "https://h/",
    };
    for (size_t i = 0; i < KC_ARRAY_LEN(good); i++) {
        assert_int_equal(kc_webpush_endpoint_ok(good[i], 0, err, sizeof(err)), 0);
        assert_int_equal(kc_webpush_endpoint_ok(good[i], 1, err, sizeof(err)), 0);
    }
    const char *loop[] = {"http://127.0.0.1:28999/push/1", "http://127.9.8.7/p",
                          "http://localhost:1/p", "http://LOCALHOST/p", "http://[::1]:80/p",
                          "http://[0:0:0:0:0:0:0:1]/p"};
    for (size_t i = 0; i < KC_ARRAY_LEN(loop); i++) {
        assert_int_equal(kc_webpush_endpoint_ok(loop[i], 1, err, sizeof(err)), 0);
        assert_int_equal(kc_webpush_endpoint_ok(loop[i], 0, err, sizeof(err)), -1);
        assert_string_equal(err, "endpoint must be an https:// URL");
    }
    const char *not_loop[] = {"http://10.0.0.1/p",        "http://example.com/p",
                              "http://127.0.0.1.nip.io/p", "http://0x7f.0.0.1/p",
                              "http://127.1/p",            "http://[::2]/p",
                              "http://localhost.evil/p",   "http://[::ffff:127.0.0.1]/p"};
    for (size_t i = 0; i < KC_ARRAY_LEN(not_loop); i++) {
        assert_int_equal(kc_webpush_endpoint_ok(not_loop[i], 1, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "loopback"));
    }
    struct {
        const char *url, *why;
    } bad[] = {
        {NULL, "endpoint must be an https:// URL"},
        {"", "endpoint must be an https:// URL"},
        {"ftp://h/p", "endpoint must be an https:// URL"},
        {"//h/p", "endpoint must be an https:// URL"},
        {"https:/h/p", "endpoint must be an https:// URL"},
        {"https://user:pw@h/p", "endpoint must not carry user info"},
        {"https://h@evil/p", "endpoint must not carry user info"},
        {"https:///p", "endpoint has no host"},
        {"https://:443/p", "endpoint has no host"},
        {"https://h", "endpoint must be https://host[:port]/path"},
        {"https://h?x", "endpoint must be https://host[:port]/path"},
        {"https://h:0/p", "endpoint has a bad port"},
        {"https://h:65536/p", "endpoint has a bad port"},
        {"https://h:/p", "endpoint has a bad port"},
        {"https://h:44x/p", "endpoint has a bad port"},
        {"https://h:000443/p", "endpoint has a bad port"},
        {"https://h:0443/p", "endpoint has a bad port"},
        {"https://h%2e/p", "endpoint has a bad host name"},
        {"https://h!/p", "endpoint has a bad host name"},
        {"https://[::1/p", "endpoint has a bad IPv6 address"},
        {"https://[g::1]/p", "endpoint has a bad IPv6 address"},
        {"https://[::1]x/p", "endpoint has a bad port"},
        {"https://h/a b", "endpoint must be a URL of printable ASCII without white space"},
        {"https://h/a\tb", "endpoint must be a URL of printable ASCII without white space"},
        {"https://h/a\x7f", "endpoint must be a URL of printable ASCII without white space"},
        {"https://h/\xc3\xa9", "endpoint must be a URL of printable ASCII without white space"},
        {"https://h/\r\nX: y", "endpoint must be a URL of printable ASCII without white space"},
    };
    for (size_t i = 0; i < KC_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_int_equal(kc_webpush_endpoint_ok(bad[i].url, 1, err, sizeof(err)), -1);
        assert_string_equal(err, bad[i].why);
    }
    /* 2048 bytes at most */
    char url[KC_WEBPUSH_ENDPOINT_MAX + 2];
    memset(url, 'a', sizeof(url));
    memcpy(url, "https://h/", 10);
    url[KC_WEBPUSH_ENDPOINT_MAX] = '\0';
    assert_int_equal(kc_webpush_endpoint_ok(url, 0, err, sizeof(err)), 0);
    url[KC_WEBPUSH_ENDPOINT_MAX] = 'a';
    url[KC_WEBPUSH_ENDPOINT_MAX + 1] = '\0';
    assert_int_equal(kc_webpush_endpoint_ok(url, 0, err, sizeof(err)), -1);
    assert_string_equal(err, "endpoint is longer than 2048 bytes");
}

/* ---- VAPID ---- */

static void test_vapid_load(void **state)
{
    (void)state;
    char err[256];
    EVP_PKEY *k = p256_new();
    unsigned char pt[65], got[80];
    point_of(k, pt);
    const char *files[] = {key_file(k, "pkcs8.pem", PKCS8), key_file(k, "sec1.pem", SEC1)};
    for (size_t i = 0; i < 2; i++) {
        for (int need = 0; need <= 1; need++) {
            kc_vapid_t *v = kc_vapid_load(files[i], need, err, sizeof(err));
            assert_non_null(v);
            assert_int_equal(kc_vapid_has_private(v), 1);
            const char *pub = kc_vapid_public_b64(v);
            assert_int_equal(strlen(pub), KC_VAPID_PUBLIC_B64_LEN);
            assert_int_equal(unb64url(pub, got, sizeof(got)), 65);
            assert_memory_equal(got, pt, 65);
            kc_vapid_free(v);
        }
    }
    /* the public key alone: for the API, not for signing */
    const char *spki = key_file(k, "spki.pem", SPKI);
    kc_vapid_t *v = kc_vapid_load(spki, 0, err, sizeof(err));
    assert_non_null(v);
    assert_int_equal(kc_vapid_has_private(v), 0);
    assert_int_equal(unb64url(kc_vapid_public_b64(v), got, sizeof(got)), 65);
    assert_memory_equal(got, pt, 65);
    kc_buf_t h = {0};
    assert_int_equal(kc_vapid_header(v, "https://h/p", "mailto:a@b.c", 1700000000, &h), -1);
    assert_int_equal(h.len, 0);
    kc_vapid_free(v);
    assert_null(kc_vapid_load(spki, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "no private key"));

    /* `openssl ecparam -genkey` writes an "EC PARAMETERS" block before the key */
    char path[160], cmd[400];
    snprintf(path, sizeof(path), "%s/ecparam.pem", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    BIO *b = BIO_new_fp(f, BIO_NOCLOSE);
    assert_non_null(b);
    fputs("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n", f);
    fflush(f);
    assert_int_equal(PEM_write_bio_PrivateKey_traditional(b, k, NULL, NULL, 0, NULL, NULL), 1);
    BIO_free(b);
    fclose(f);
    v = kc_vapid_load(path, 1, err, sizeof(err));
    assert_non_null(v);
    kc_vapid_free(v);

    /* refused: missing, empty, not PEM, encrypted, RSA, P-384, too large */
    assert_null(kc_vapid_load("/nonexistent/vapid.pem", 0, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot open"));
    snprintf(path, sizeof(path), "%s/empty.pem", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_null(kc_vapid_load(path, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "empty file"));
    snprintf(path, sizeof(path), "%s/junk.pem", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a key\n", f);
    fclose(f);
    assert_null(kc_vapid_load(path, 0, err, sizeof(err)));
    assert_null(kc_vapid_load(path, 1, err, sizeof(err)));
    assert_null(kc_vapid_load(key_file(k, "enc.pem", ENCRYPTED), 1, err, sizeof(err)));
    assert_null(kc_vapid_load(key_file(k, "enc2.pem", ENCRYPTED), 0, err, sizeof(err)));
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    assert_non_null(rsa);
    assert_null(kc_vapid_load(key_file(rsa, "rsa.pem", PKCS8), 1, err, sizeof(err)));
    assert_non_null(strstr(err, "not an EC P-256"));
    assert_null(kc_vapid_load(key_file(rsa, "rsa-pub.pem", SPKI), 0, err, sizeof(err)));
    EVP_PKEY_free(rsa);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    assert_non_null(p384);
    assert_null(kc_vapid_load(key_file(p384, "p384.pem", PKCS8), 0, err, sizeof(err)));
    assert_non_null(strstr(err, "not an EC P-256"));
    EVP_PKEY_free(p384);
    snprintf(path, sizeof(path), "%s/big.pem", dir);
    snprintf(cmd, sizeof(cmd), "head -c 20000 /dev/zero | tr '\\0' a > '%s'", path);
    assert_int_equal(system(cmd), 0);
    assert_null(kc_vapid_load(path, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "larger than 16 KiB"));
    kc_vapid_free(NULL);
    EVP_PKEY_free(k);
}

/* Splits "vapid t=<jwt>, k=<key>" and checks the JWT: its header, its claims (aud, exp,
 * sub returned), and its ES256 signature against pub with OpenSSL. */
static void check_header(const char *h, EVP_PKEY *pub, const char *k_want, char *aud,
                         size_t audlen, long long *exp, char *sub, size_t sublen)
{
    assert_int_equal(strncmp(h, "vapid t=", 8), 0);
    const char *t = h + 8, *comma = strstr(t, ", k=");
    assert_non_null(comma);
    assert_string_equal(comma + 4, k_want);
    size_t tlen = (size_t)(comma - t);
    char *jwt = kc_xstrndup(t, tlen);
    char *dot1 = strchr(jwt, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    assert_non_null(dot2);
    assert_null(strchr(dot2 + 1, '.'));

    unsigned char raw[512];
    size_t n = 0;
    *dot1 = '\0';
    n = unb64url(jwt, raw, sizeof(raw) - 1);
    raw[n] = '\0';
    assert_string_equal((char *)raw, "{\"typ\":\"JWT\",\"alg\":\"ES256\"}");
    *dot1 = '.';
    *dot2 = '\0';
    n = unb64url(dot1 + 1, raw, sizeof(raw) - 1);
    raw[n] = '\0';
    cJSON *c = cJSON_Parse((char *)raw);
    assert_non_null(c);
    assert_int_equal(cJSON_GetArraySize(c), 3);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(c, "aud");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(c, "exp");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(c, "sub");
    assert_true(cJSON_IsString(a) && cJSON_IsNumber(e) && cJSON_IsString(s));
    snprintf(aud, audlen, "%s", a->valuestring);
    snprintf(sub, sublen, "%s", s->valuestring);
    *exp = (long long)e->valuedouble;
    cJSON_Delete(c);

    /* the signature: raw r || s, 64 bytes; OpenSSL verifies the DER form */
    unsigned char sig[64];
    assert_int_equal(unb64url(dot2 + 1, sig, sizeof(sig)), 64);
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
    assert_true(es && r && ss && ECDSA_SIG_set0(es, r, ss) == 1);
    unsigned char *der = NULL;
    int derlen = i2d_ECDSA_SIG(es, &der);
    assert_true(derlen > 0);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pub, NULL), 1);
    assert_int_equal(EVP_DigestVerify(md, der, (size_t)derlen, (unsigned char *)jwt,
                                      (size_t)(dot2 - jwt)),
                     1);
    /* ... and not for another message */
    EVP_MD_CTX_free(md);
    md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pub, NULL), 1);
    assert_int_not_equal(EVP_DigestVerify(md, der, (size_t)derlen, (unsigned char *)jwt,
                                          (size_t)(dot2 - jwt) - 1),
                         1);
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    free(jwt);
}

static void test_vapid_header(void **state)
{
    (void)state;
    char err[256];
    EVP_PKEY *k = p256_new();
    kc_vapid_t *v = kc_vapid_load(key_file(k, "signer.pem", PKCS8), 1, err, sizeof(err));
    assert_non_null(v);
    /* the verifying key read back from its own file, as a relying party has it */
    BIO *b = BIO_new_file(key_file(k, "signer-pub.pem", SPKI), "r");
    EVP_PKEY *pub = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(pub);

    struct {
        const char *url, *aud;
    } cases[] = {
        {"https://fcm.googleapis.com/fcm/send/abc:def", "https://fcm.googleapis.com"},
        {"https://updates.push.services.mozilla.com/wpush/v2/x",
         "https://updates.push.services.mozilla.com"},
        {"https://push.example.net:8443/a/b?c=d#e", "https://push.example.net:8443"},
        {"HTTPS://Push.Example.NET/p", "https://push.example.net"},
        {"https://push.example.net:443/p", "https://push.example.net"},
        {"https://push.example.net:80/p", "https://push.example.net:80"},
        {"http://127.0.0.1:28999/push/1", "http://127.0.0.1:28999"},
        {"http://localhost:80/p", "http://localhost"},
        {"https://[::1]:9000/p", "https://[::1]:9000"},
        {"https://h?x", "https://h"},
    };
    for (size_t i = 0; i < KC_ARRAY_LEN(cases); i++) {
        kc_buf_t h = {0};
        long long exp = 1700000000 + (long long)i;
        assert_int_equal(kc_vapid_header(v, cases[i].url, "mailto:ops@example.com", exp, &h), 0);
        char aud[256], sub[256];
        long long got_exp = 0;
        check_header(h.data, pub, kc_vapid_public_b64(v), aud, sizeof(aud), &got_exp, sub,
                     sizeof(sub));
        assert_string_equal(aud, cases[i].aud);
        assert_int_equal(got_exp, exp);
        assert_string_equal(sub, "mailto:ops@example.com");
        kc_buf_free(&h);
    }
    /* an https: subject; two headers differ (ECDSA's random k), both verify */
    kc_buf_t h1 = {0}, h2 = {0};
    assert_int_equal(kc_vapid_header(v, "https://h/p", "https://chat.example.com/contact",
                                     2000000000, &h1),
                     0);
    assert_int_equal(kc_vapid_header(v, "https://h/p", "https://chat.example.com/contact",
                                     2000000000, &h2),
                     0);
    assert_string_not_equal(h1.data, h2.data);
    char aud[256], sub[256];
    long long exp;
    check_header(h2.data, pub, kc_vapid_public_b64(v), aud, sizeof(aud), &exp, sub, sizeof(sub));
    assert_string_equal(sub, "https://chat.example.com/contact");
    /* a header from another key does not verify with this one */
    EVP_PKEY *other = p256_new();
    kc_vapid_t *ov = kc_vapid_load(key_file(other, "other.pem", SEC1), 1, err, sizeof(err));
    assert_non_null(ov);
    kc_buf_t h3 = {0};
    assert_int_equal(kc_vapid_header(ov, "https://h/p", "mailto:a@b.c", 2000000000, &h3), 0);
    const char *t = h3.data + 8, *sig = strrchr(h3.data, '.') + 1;
    const char *comma = strstr(h3.data, ", k=");
    unsigned char raw[64];
    char *sigtext = kc_xstrndup(sig, (size_t)(comma - sig));
    assert_int_equal(unb64url(sigtext, raw, sizeof(raw)), 64);
    free(sigtext);
    ECDSA_SIG *es = ECDSA_SIG_new();
    assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL)),
                     1);
    unsigned char *der = NULL;
    int derlen = i2d_ECDSA_SIG(es, &der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pub, NULL), 1);
    assert_int_not_equal(
        EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)t, (size_t)(sig - 1 - t)),
        1);
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    kc_vapid_free(ov);
    EVP_PKEY_free(other);

    /* refusals leave out as it was */
    kc_buf_t out = {0};
    kc_buf_puts(&out, "kept");
    const char *bad_urls[] = {"ftp://h/p", "https://u@h/p", "https:///p", "https://h:0/p",
                              "https://h:99999/p", "https://h/a b", "not a url", ""};
    for (size_t i = 0; i < KC_ARRAY_LEN(bad_urls); i++)
        assert_int_equal(kc_vapid_header(v, bad_urls[i], "mailto:a@b.c", 2000000000, &out), -1);
    const char *bad_subjects[] = {"", "a@b.c", "http://insecure.example", "mailto:a b@c",
                                  "mailto:\"@c", "mailto:a\n@c"};
    for (size_t i = 0; i < KC_ARRAY_LEN(bad_subjects); i++)
        assert_int_equal(kc_vapid_header(v, "https://h/p", bad_subjects[i], 2000000000, &out),
                         -1);
    assert_int_equal(kc_vapid_header(v, "https://h/p", NULL, 2000000000, &out), -1);
    assert_int_equal(kc_vapid_header(v, NULL, "mailto:a@b.c", 2000000000, &out), -1);
    assert_int_equal(kc_vapid_header(v, "https://h/p", "mailto:a@b.c", 0, &out), -1);
    assert_int_equal(kc_vapid_header(NULL, "https://h/p", "mailto:a@b.c", 1, &out), -1);
    assert_string_equal(out.data, "kept");
    kc_buf_free(&out);
    kc_buf_free(&h1);
    kc_buf_free(&h2);
    kc_buf_free(&h3);
    kc_vapid_free(v);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(k);
}

/* ---- Standard Webhooks ---- */

static void test_webhook_sign(void **state)
{
    (void)state;
    const char *body = "{\"test\": 2432232314}";
    kc_buf_t out = {0};
    assert_int_equal(kc_webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                     "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                                     strlen(body), &out),
                     0);
    assert_string_equal(out.data, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    kc_buf_free(&out);

    /* a secret without the prefix is its own bytes; compare with OpenSSL's one-shot HMAC */
    const char *raw_secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const char *msg = "msg_1.-5.";
    unsigned char sum[32];
    unsigned int sumlen = 0;
    assert_non_null(HMAC(EVP_sha256(), raw_secret, (int)strlen(raw_secret),
                         (const unsigned char *)msg, strlen(msg), sum, &sumlen));
    char want[64] = "v1,";
    sodium_bin2base64(want + 3, sizeof(want) - 3, sum, sumlen, sodium_base64_VARIANT_ORIGINAL);
    assert_int_equal(kc_webhook_sign(raw_secret, "msg_1", -5, NULL, 0, &out), 0);
    assert_string_equal(out.data, want);
    kc_buf_free(&out);

    /* padding tolerated: "whsec_" and the base64 of 32 bytes, with and without its '=' */
    unsigned char key[32];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (unsigned char)(i * 7 + 1);
    char secret[80] = "whsec_";
    sodium_bin2base64(secret + 6, sizeof(secret) - 6, key, sizeof(key),
                      sodium_base64_VARIANT_ORIGINAL);
    assert_non_null(strchr(secret, '='));
    assert_non_null(HMAC(EVP_sha256(), key, sizeof(key), (const unsigned char *)"m.1.b", 5, sum,
                         &sumlen));
    sodium_bin2base64(want + 3, sizeof(want) - 3, sum, sumlen, sodium_base64_VARIANT_ORIGINAL);
    assert_int_equal(kc_webhook_sign(secret, "m", 1, "b", 1, &out), 0);
    assert_string_equal(out.data, want);
    kc_buf_reset(&out);
    *strchr(secret, '=') = '\0';
    assert_int_equal(kc_webhook_sign(secret, "m", 1, "b", 1, &out), 0);
    assert_string_equal(out.data, want);
    kc_buf_free(&out);

    /* refused, out kept */
    kc_buf_puts(&out, "kept");
    assert_int_equal(kc_webhook_sign("whsec_", "m", 1, "b", 1, &out), -1);
    assert_int_equal(kc_webhook_sign("whsec_!!!!", "m", 1, "b", 1, &out), -1);
    assert_int_equal(kc_webhook_sign("whsec_MfKQ9r8G-YqrTwjUPD8ILPZIo2LaLaSw", "m", 1, "b", 1,
                                     &out),
                     -1); /* base64url's '-' is not in the standard alphabet */
    assert_int_equal(kc_webhook_sign("", "m", 1, "b", 1, &out), -1);
    assert_int_equal(kc_webhook_sign(NULL, "m", 1, "b", 1, &out), -1);
    assert_int_equal(kc_webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "", 1, "b", 1,
                                     &out),
                     -1);
    assert_int_equal(kc_webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, NULL, 3,
                                     &out),
                     -1);
    assert_string_equal(out.data, "kept");
    kc_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8291_appendix_a), cmocka_unit_test(test_encrypt_round_trip),
        cmocka_unit_test(test_keys_ok),            cmocka_unit_test(test_endpoint_ok),
        cmocka_unit_test(test_vapid_load),         cmocka_unit_test(test_vapid_header),
        cmocka_unit_test(test_webhook_sign),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
