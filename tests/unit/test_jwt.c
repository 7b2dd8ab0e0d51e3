/* Unit tests of lib/jwt: RS256 tokens signed and verified, and every way a token is refused:
 * alg none, HS256 keyed with the public key (the RS/HS confusion), a foreign key, a tampered
 * payload, expiry, not-before, issuer, audience, garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kchat/jwt.h"
#include "kchat/util.h"

static char dir[] = "/tmp/kc-jwt-XXXXXX";
static char priv_path[64], pub_path[64], other_path[64], other_pub_path[64], ring_path[64];

static void write_key(EVP_PKEY *k, const char *path, int private)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    int ok = private ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL)
                     : PEM_write_PUBKEY(f, k);
    assert_int_equal(ok, 1);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir) || sodium_init() < 0)
        return -1;
    snprintf(priv_path, sizeof(priv_path), "%s/priv.pem", dir);
    snprintf(pub_path, sizeof(pub_path), "%s/pub.pem", dir);
    snprintf(other_path, sizeof(other_path), "%s/other.pem", dir);
    snprintf(other_pub_path, sizeof(other_pub_path), "%s/other-pub.pem", dir);
    snprintf(ring_path, sizeof(ring_path), "%s/ring.pem", dir);
    EVP_PKEY *k = EVP_RSA_gen(2048);
    EVP_PKEY *o = EVP_RSA_gen(2048);
    if (!k || !o)
        return -1;
    write_key(k, priv_path, 1);
    write_key(k, pub_path, 0);
    write_key(o, other_path, 1);
    write_key(o, other_pub_path, 0);
    EVP_PKEY_free(k);
    EVP_PKEY_free(o);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(priv_path);
    unlink(pub_path);
    unlink(other_path);
    unlink(other_pub_path);
    unlink(ring_path);
    rmdir(dir);
    return 0;
}

static kc_jwt_key_t *key(const char *path)
{
    char err[256];
    kc_jwt_key_t *k = kc_jwt_key_load(path, "kchat", "kchat", err, sizeof(err));
    assert_non_null(k);
    return k;
}

static kc_jwt_status_t verify(const char *tok, long long now)
{
    kc_jwt_key_t *pub = key(pub_path);
    kc_jwt_claims_t c;
    char err[256];
    kc_jwt_status_t st = kc_jwt_verify(pub, tok, now, 5, &c, err, sizeof(err));
    kc_jwt_key_free(pub);
    return st;
}

static void test_roundtrip(void **state)
{
    (void)state;
    kc_jwt_key_t *priv = key(priv_path), *pub = key(pub_path);
    char err[256];
    char *tok = kc_jwt_sign(priv, "u-42", "alice", 1000, 900, err, sizeof(err));
    assert_non_null(tok);
    kc_jwt_claims_t c;
    assert_int_equal(kc_jwt_verify(pub, tok, 1000, 5, &c, err, sizeof(err)), KC_JWT_OK);
    assert_string_equal(c.sub, "u-42");
    assert_string_equal(c.name, "alice");
    assert_int_equal(c.exp, 1900);
    /* Expiry and not-before, with the leeway. */
    assert_int_equal(kc_jwt_verify(pub, tok, 1905, 5, &c, err, sizeof(err)), KC_JWT_OK);
    assert_int_equal(kc_jwt_verify(pub, tok, 1906, 5, &c, err, sizeof(err)), KC_JWT_EXPIRED);
    assert_string_equal(kc_jwt_status_code(KC_JWT_EXPIRED), "token_expired");
    assert_int_equal(kc_jwt_verify(pub, tok, 994, 5, &c, err, sizeof(err)),
                     KC_JWT_NOT_YET_VALID);
    /* A tampered payload: flip one character of the middle part. */
    char *bad = kc_xstrdup(tok);
    char *p = strchr(bad, '.') + 3;
    *p = *p == 'A' ? 'B' : 'A';
    assert_int_equal(kc_jwt_verify(pub, bad, 1000, 5, &c, err, sizeof(err)),
                     KC_JWT_BAD_SIGNATURE);
    free(bad);
    /* The signature spelled another way: padded, or with unused bits set in its last
     * character (RS256 with 2048 bits: 256 bytes, 342 characters, the last carrying 2 bits
     * and 4 unused). */
    size_t n = strlen(tok);
    char *padded = kc_xmalloc(n + 3);
    memcpy(padded, tok, n);
    memcpy(padded + n, "==", 3);
    assert_int_equal(kc_jwt_verify(pub, padded, 1000, 5, &c, err, sizeof(err)), KC_JWT_MALFORMED);
    padded[n + 1] = '\0';
    assert_int_equal(kc_jwt_verify(pub, padded, 1000, 5, &c, err, sizeof(err)), KC_JWT_MALFORMED);
    memcpy(padded, tok, n + 1);
    static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *at = strchr(B64, padded[n - 1]);
    assert_non_null(at);
    padded[n - 1] = B64[(at - B64) ^ 1]; /* an unused bit */
    assert_int_equal(kc_jwt_verify(pub, padded, 1000, 5, &c, err, sizeof(err)), KC_JWT_MALFORMED);
    free(padded);
    free(tok);
    /* Signed by another key. */
    kc_jwt_key_t *other = key(other_path);
    tok = kc_jwt_sign(other, "u-42", "alice", 1000, 900, err, sizeof(err));
    assert_non_null(tok);
    assert_int_equal(kc_jwt_verify(pub, tok, 1000, 5, &c, err, sizeof(err)),
                     KC_JWT_BAD_SIGNATURE);
    free(tok);
    kc_jwt_key_free(other);
    kc_jwt_key_free(priv);
    kc_jwt_key_free(pub);
}

static void test_issuer_audience(void **state)
{
    (void)state;
    char err[256];
    kc_jwt_key_t *wrong_iss = kc_jwt_key_load(priv_path, "evil", "kchat", err, sizeof(err));
    kc_jwt_key_t *wrong_aud = kc_jwt_key_load(priv_path, "kchat", "other", err, sizeof(err));
    char *t1 = kc_jwt_sign(wrong_iss, "u1", NULL, 1000, 60, err, sizeof(err));
    char *t2 = kc_jwt_sign(wrong_aud, "u1", NULL, 1000, 60, err, sizeof(err));
    assert_int_equal(verify(t1, 1000), KC_JWT_BAD_ISSUER);
    assert_int_equal(verify(t2, 1000), KC_JWT_BAD_AUDIENCE);
    free(t1);
    free(t2);
    kc_jwt_key_free(wrong_iss);
    kc_jwt_key_free(wrong_aud);
}

/* A token built by libjwt itself with another algorithm and the given key. */
static char *forge(jwt_alg_t alg, const unsigned char *k, int klen)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    jwt_add_grant(j, "iss", "kchat");
    jwt_add_grant(j, "aud", "kchat");
    jwt_add_grant(j, "sub", "admin");
    jwt_add_grant_int(j, "exp", 5000);
    assert_int_equal(jwt_set_alg(j, alg, k, klen), 0);
    char *t = jwt_encode_str(j);
    jwt_free(j);
    assert_non_null(t);
    return t;
}

static void test_algorithm_pinned(void **state)
{
    (void)state;
    /* alg none */
    char *t = forge(JWT_ALG_NONE, NULL, 0);
    assert_int_equal(verify(t, 1000), KC_JWT_ALG_REFUSED);
    free(t);
    /* HS256 keyed with the public key's PEM: what a naive verifier would accept. */
    FILE *f = fopen(pub_path, "rb");
    unsigned char pem[4096];
    size_t n = fread(pem, 1, sizeof(pem), f);
    fclose(f);
    t = forge(JWT_ALG_HS256, pem, (int)n);
    assert_int_equal(verify(t, 1000), KC_JWT_ALG_REFUSED);
    free(t);
}

static void test_garbage(void **state)
{
    (void)state;
    const char *bad[] = {"", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.",
                         "eyJhbGciOiJSUzI1NiJ9.%%%.abc"};
    for (size_t i = 0; i < KC_ARRAY_LEN(bad); i++)
        assert_int_not_equal(verify(bad[i], 1000), KC_JWT_OK);
    char *huge = kc_xmalloc(KC_JWT_MAX_LEN + 10);
    memset(huge, 'a', KC_JWT_MAX_LEN + 9);
    huge[KC_JWT_MAX_LEN + 9] = '\0';
    assert_int_equal(verify(huge, 1000), KC_JWT_MALFORMED);
    free(huge);
    char err[256];
    assert_null(kc_jwt_key_load("/nonexistent/key.pem", "a", "b", err, sizeof(err)));
}

/* A file of several public keys, as during a rotation: each one's tokens verify. */
static void write_ring(const char *const *parts, size_t n, const char *tail)
{
    FILE *out = fopen(ring_path, "w");
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        char text[16384];
        FILE *in = fopen(parts[i], "r");
        assert_non_null(in);
        size_t len = fread(text, 1, sizeof(text), in);
        fclose(in);
        assert_true(len > 0);
        assert_int_equal(fwrite(text, 1, len, out), len);
    }
    if (tail)
        fputs(tail, out);
    assert_int_equal(fclose(out), 0);
}

static void test_rotation_keys(void **state)
{
    (void)state;
    char err[256];
    kc_jwt_key_t *signer = key(priv_path), *old_signer = key(other_path);
    char *tok = kc_jwt_sign(signer, "u_ann", "ann", 1000, 900, err, sizeof(err));
    char *old_tok = kc_jwt_sign(old_signer, "u_ann", "ann", 1000, 900, err, sizeof(err));
    assert_non_null(tok);
    assert_non_null(old_tok);
    kc_jwt_claims_t c;
    const char *both[] = {pub_path, other_pub_path};
    write_ring(both, 2, NULL);
    kc_jwt_key_t *ring = key(ring_path);
    assert_int_equal(kc_jwt_verify(ring, tok, 1000, 5, &c, err, sizeof(err)), KC_JWT_OK);
    assert_int_equal(kc_jwt_verify(ring, old_tok, 1000, 5, &c, err, sizeof(err)), KC_JWT_OK);
    assert_string_equal(c.sub, "u_ann");
    kc_jwt_key_free(ring);
    /* The old key removed: its tokens fail, the new ones still pass. */
    write_ring(both, 1, NULL);
    ring = key(ring_path);
    assert_int_equal(kc_jwt_verify(ring, old_tok, 1000, 5, &c, err, sizeof(err)),
                     KC_JWT_BAD_SIGNATURE);
    assert_int_equal(kc_jwt_verify(ring, tok, 1000, 5, &c, err, sizeof(err)), KC_JWT_OK);
    kc_jwt_key_free(ring);
    /* Too many keys, and a block left open, are refused at load. */
    const char *five[] = {pub_path, other_pub_path, pub_path, other_pub_path, pub_path};
    write_ring(five, 5, NULL);
    assert_null(kc_jwt_key_load(ring_path, "kchat", "kchat", err, sizeof(err)));
    assert_non_null(strstr(err, "more than 4 keys"));
    write_ring(both, 1, "-----BEGIN PUBLIC KEY-----\nAAAA\n");
    assert_null(kc_jwt_key_load(ring_path, "kchat", "kchat", err, sizeof(err)));
    free(tok);
    free(old_tok);
    kc_jwt_key_free(signer);
    kc_jwt_key_free(old_signer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_issuer_audience),
        cmocka_unit_test(test_algorithm_pinned),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_rotation_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
