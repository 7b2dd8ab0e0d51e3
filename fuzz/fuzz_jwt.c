/* fuzz_jwt.c - an access token as every daemon reads it (lib/jwt.c, kc_jwt_verify), from a
 * WebSocket handshake or an Authorization header.
 *
 * The first byte picks what the rest is:
 *   0  the token itself: it was signed by nobody, so it must never verify (alg none,
 *      HS256 with the public key, a signature spelled another way...);
 *   1  the claims (payload JSON) of a token the driver signs with the key the verifier
 *      trusts, under the header {"alg":"RS256","typ":"JWT"}: the claims checks are reached;
 *   2  a header, a newline, then the claims, signed the same way.
 * What verifies must carry a subject that is an id and a name that is short UTF-8, and must
 * not have expired. The key pair is made once, at start-up (RSA-512: its size is no matter
 * to the parser, and signing stays cheap).
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "kchat/buf.h"
#include "kchat/jwt.h"
#include "kchat/util.h"

#define NOW 1764950000LL /* a fixed clock, so that the corpus means the same on every run */
#define LEEWAY 30

static kc_jwt_key_t *verifier;
static EVP_PKEY *signer;

static void write_public(EVP_PKEY *k, const char *path)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(PEM_write_PUBKEY(f, k) == 1);
    CHECK(fclose(f) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    CHECK(sodium_init() >= 0);
    signer = EVP_RSA_gen(512);
    CHECK(signer != NULL);
    char path[] = "/tmp/kchat-fuzz-jwt-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(close(fd) == 0);
    write_public(signer, path);
    char err[256];
    verifier = kc_jwt_key_load(path, "kchat", "kchat", err, sizeof(err));
    CHECK(unlink(path) == 0);
    if (!verifier) {
        fprintf(stderr, "fuzz_jwt: %s\n", err);
        abort();
    }
    return 0;
}

static void b64(kc_buf_t *b, const void *p, size_t n)
{
    size_t size = sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    kc_buf_reserve(b, size);
    sodium_bin2base64(b->data + b->len, size, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    b->len += strlen(b->data + b->len);
}

/* header.payload.signature, signed RS256 with the trusted key. */
static void sign(kc_buf_t *tok, const uint8_t *h, size_t hn, const uint8_t *p, size_t pn)
{
    b64(tok, h, hn);
    kc_buf_putc(tok, '.');
    b64(tok, p, pn);
    unsigned char sig[512];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    CHECK(ctx != NULL);
    CHECK(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, signer) == 1);
    CHECK(EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)tok->data, tok->len) == 1);
    EVP_MD_CTX_free(ctx);
    kc_buf_putc(tok, '.');
    b64(tok, sig, siglen);
}

static int printable_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > KC_JWT_SUB_MAX || !kc_utf8_valid(s, n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    data++;
    size--;
    kc_buf_t tok = {0};
    static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    if (mode == 0) {
        kc_buf_append(&tok, data, size);
    } else if (mode == 1) {
        sign(&tok, (const uint8_t *)header, sizeof(header) - 1, data, size);
    } else {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t hn = nl ? (size_t)(nl - data) : size;
        sign(&tok, data, hn, nl ? nl + 1 : data + size, nl ? size - hn - 1 : 0);
    }
    kc_buf_putc(&tok, '\0'); /* a token is a C string: it ends at the first NUL */
    kc_jwt_claims_t c;
    char err[160];
    kc_jwt_status_t st = kc_jwt_verify(verifier, tok.data, NOW, LEEWAY, &c, err, sizeof(err));
    CHECK(kc_jwt_status_code(st) != NULL);
    if (st == KC_JWT_OK) {
        CHECK(mode != 0); /* nobody signed it */
        CHECK(printable_id(c.sub));
        CHECK(strlen(c.name) <= KC_JWT_NAME_MAX && kc_utf8_valid(c.name, strlen(c.name)));
        CHECK(c.exp + LEEWAY >= NOW);
    } else {
        CHECK(err[0] != '\0' && c.sub[0] == '\0');
    }
    kc_buf_free(&tok);
    return 0;
}
