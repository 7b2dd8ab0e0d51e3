/* fuzz_webpush.c - what a browser sends to subscribe to Web Push, as kchat-api checks it before
 * it stores it and kchat-notifier uses it (lib/webpush.c): the endpoint URL
 * (kc_webpush_endpoint_ok) and the keys (kc_webpush_keys_ok).
 *
 * The first byte picks what the rest is:
 *   0, 1  an endpoint, checked without (0) and with (1) --push-allow-http: what is taken is
 *         at most 2048 bytes of printable ASCII starting with https:// (http:// only when
 *         allowed), is taken when http is allowed too, and is a URL a VAPID header can be
 *         signed for (kc_vapid_header, with a key made at start-up), whose "aud" is the URL's
 *         start; a refusal says why;
 *   2     p256dh, a newline, then auth: keys taken decode to a 65-byte point starting 0x04 and
 *         16 bytes, and a push can be encrypted to them (kc_webpush_encrypt); keys refused are
 *         refused by kc_webpush_encrypt as well, and the refusal says why.
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fuzz.h"
#include "kchat/buf.h"
#include "kchat/util.h"
#include "kchat/webpush.h"

static kc_vapid_t *vapid;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    CHECK(sodium_init() >= 0);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    CHECK(k != NULL);
    char path[] = "/tmp/kchat-fuzz-webpush-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(close(fd) == 0);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1);
    CHECK(fclose(f) == 0);
    EVP_PKEY_free(k);
    char err[256];
    vapid = kc_vapid_load(path, 1, err, sizeof(err));
    CHECK(unlink(path) == 0);
    if (!vapid) {
        fprintf(stderr, "fuzz_webpush: %s\n", err);
        abort();
    }
    return 0;
}

/* The JWT's claims of a header "vapid t=<h>.<claims>.<sig>, k=<key>", decoded. */
static void claims_of(const char *h, char *out, size_t outlen)
{
    const char *dot1 = strchr(h, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    CHECK(dot2 != NULL);
    size_t n = 0;
    CHECK(sodium_base642bin((unsigned char *)out, outlen - 1, dot1 + 1, (size_t)(dot2 - dot1 - 1),
                            NULL, &n, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0);
    out[n] = '\0';
}

static void check_endpoint(const char *url, int allow_http)
{
    char err[160] = "";
    if (kc_webpush_endpoint_ok(url, allow_http, err, sizeof(err)) != 0) {
        CHECK(err[0] != '\0');
        return;
    }
    size_t n = strlen(url);
    CHECK(n <= KC_WEBPUSH_ENDPOINT_MAX);
    for (size_t i = 0; i < n; i++)
        CHECK(url[i] > 0x20 && url[i] < 0x7f);
    int https = strncasecmp(url, "https://", 8) == 0;
    CHECK(https || (allow_http && strncasecmp(url, "http://", 7) == 0));
    CHECK(kc_webpush_endpoint_ok(url, 1, err, sizeof(err)) == 0);
    /* the host part has no user info and is followed by a path */
    const char *host = url + (https ? 8 : 7);
    size_t alen = strcspn(host, "/?#");
    CHECK(host[alen] == '/' && memchr(host, '@', alen) == NULL);

    kc_buf_t h = {0};
    CHECK(kc_vapid_header(vapid, url, "mailto:ops@example.com", 1700000000, &h) == 0);
    CHECK(strncmp(h.data, "vapid t=", 8) == 0);
    char claims[4096];
    claims_of(h.data + 8, claims, sizeof(claims));
    const char *aud = strstr(claims, "\"aud\":\"");
    CHECK(aud != NULL);
    aud += 7;
    size_t audlen = strcspn(aud, "\"");
    /* the origin is the URL's scheme and authority, in lower case, maybe without its
     * default port */
    CHECK(audlen <= (https ? 8 : 7) + alen);
    CHECK(strncasecmp(aud, url, audlen) == 0);
    kc_buf_free(&h);
}

static void check_keys(const char *p256dh, const char *auth)
{
    char err[160] = "";
    kc_buf_t out = {0};
    if (kc_webpush_keys_ok(p256dh, auth, err, sizeof(err)) != 0) {
        CHECK(err[0] != '\0');
        CHECK(kc_webpush_encrypt(p256dh, auth, "x", 1, &out) == -1 && out.len == 0);
        kc_buf_free(&out);
        return;
    }
    unsigned char pt[80], secret[32];
    size_t plen = 0, alen = 0;
    size_t n1 = strlen(p256dh), n2 = strlen(auth);
    while (n1 && p256dh[n1 - 1] == '=')
        n1--;
    while (n2 && auth[n2 - 1] == '=')
        n2--;
    CHECK(sodium_base642bin(pt, sizeof(pt), p256dh, n1, NULL, &plen, NULL,
                            sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0);
    CHECK(sodium_base642bin(secret, sizeof(secret), auth, n2, NULL, &alen, NULL,
                            sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0);
    CHECK(plen == KC_WEBPUSH_POINT_LEN && pt[0] == 0x04 && alen == KC_WEBPUSH_AUTH_LEN);
    CHECK(kc_webpush_encrypt(p256dh, auth, "x", 1, &out) == 0);
    CHECK(out.len == KC_WEBPUSH_HEADER_LEN + 1 + 1 + 16);
    kc_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4 * KC_WEBPUSH_ENDPOINT_MAX)
        return 0;
    char *text = kc_xstrndup((const char *)data + 1, size - 1); /* cut at a NUL, as JSON can't */
    switch (data[0] % 3) {
    case 0:
    case 1: check_endpoint(text, data[0] % 3); break;
    default: {
        char *nl = strchr(text, '\n');
        if (nl) {
            *nl = '\0';
            check_keys(text, nl + 1);
        }
        break;
    }
    }
    free(text);
    return 0;
}
