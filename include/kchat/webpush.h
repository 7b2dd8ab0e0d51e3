/* webpush.h - Web Push (RFC 8030) as an application server sends it, and signed webhooks.
 *
 * Three pieces, each a pure function over OpenSSL 3's EVP interfaces (no crypto of our own):
 *   - VAPID (RFC 8292): the ES256 key pair that identifies this server to the push services.
 *     The browser subscribes with the public key (kc_vapid_public_b64, served by kchat-api's
 *     GET /push/vapid-public-key); each push carries an Authorization header signed with the
 *     private key (kc_vapid_header, by kchat-notifier). The API holds only the public key.
 *   - Message encryption (RFC 8291 over RFC 8188's "aes128gcm"): a push's body is readable
 *     only by the browser whose subscription keys (p256dh, auth) it was encrypted to, never by
 *     the push service in between. Each body has its own random salt and ephemeral key.
 *   - Standard Webhooks (https://www.standardwebhooks.com/): the signature header of a
 *     webhook delivery, HMAC-SHA256 under a "whsec_" secret.
 * Plus the checks of what a browser hands over when it subscribes (kc_webpush_keys_ok,
 * kc_webpush_endpoint_ok), shared by the API that stores a subscription and the notifier that
 * reads it back.
 *
 * base64 and base64url are libsodium's (as in jwt.c and auth.c). Nothing here keeps state
 * between calls but a kc_vapid_t, which is read-only once loaded and may be shared by threads.
 */
#ifndef KCHAT_WEBPUSH_H
#define KCHAT_WEBPUSH_H

#include <stddef.h>

#include "kchat/buf.h"

/* An uncompressed P-256 point: 0x04 | x (32) | y (32). */
#define KC_WEBPUSH_POINT_LEN 65
/* The subscription's authentication secret (RFC 8291 section 3.2). */
#define KC_WEBPUSH_AUTH_LEN 16
/* base64url without padding of a point: the applicationServerKey a browser subscribes with. */
#define KC_VAPID_PUBLIC_B64_LEN 87
/* The record size written in the header; one record per message. */
#define KC_WEBPUSH_RS 4096
/* The header: salt (16) | rs (4) | idlen (1) | keyid = the sender's ephemeral point (65). */
#define KC_WEBPUSH_HEADER_LEN (16 + 4 + 1 + KC_WEBPUSH_POINT_LEN)
/* The largest plaintext: push services must take bodies of 4096 bytes (RFC 8030 section
 * 7.2), and a body is the header, the plaintext, its delimiter (1) and the GCM tag (16). */
#define KC_WEBPUSH_MAX_PLAIN (4096 - KC_WEBPUSH_HEADER_LEN - 1 - 16)
/* Longest endpoint URL taken from a browser (kc_webpush_endpoint_ok). */
#define KC_WEBPUSH_ENDPOINT_MAX 2048

/* ---- VAPID (RFC 8292) ---- */

typedef struct kc_vapid kc_vapid_t;

/* Loads an EC P-256 key from a PEM file (at most 16 KiB). need_private=1: the file must hold
 * the private key (PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY", not encrypted).
 * need_private=0: a public key PEM (SPKI "PUBLIC KEY") or a private key PEM (the public half
 * is derived; the private half is kept, so kc_vapid_header works too). NULL with err on any
 * failure (missing file, not PEM, encrypted, not EC, not P-256, ...). The caller owns the
 * result: kc_vapid_free. */
kc_vapid_t *kc_vapid_load(const char *path, int need_private, char *err, size_t errlen);
/* NULL: no-op. */
void kc_vapid_free(kc_vapid_t *v);
/* 1 when v holds the private key (it can sign headers), else 0. */
int kc_vapid_has_private(const kc_vapid_t *v);
/* The public key as the browser's applicationServerKey wants it: base64url (no padding) of
 * the 65-byte uncompressed point (KC_VAPID_PUBLIC_B64_LEN characters). Owned by v. */
const char *kc_vapid_public_b64(const kc_vapid_t *v);
/* Appends to out the Authorization header VALUE "vapid t=<jwt>, k=<public_b64>" for a push
 * to endpoint_url. The JWT: header {"typ":"JWT","alg":"ES256"}, claims {"aud": the origin of
 * endpoint_url (scheme://host[:port], scheme and host in lower case, the scheme's default
 * port left out, as RFC 6454 serialises an origin; any other port kept, path, query and
 * fragment dropped), "exp": exp_s, "sub": subject}, signed ES256 with the signature as the
 * raw 64 bytes r || s (JWS, RFC 7518 section 3.4; not DER) in base64url. endpoint_url must be
 * http(s)://host[:port]... without user info, white space or control characters; subject a
 * "mailto:" or "https:" URL (RFC 8292 section 2.1) of at most 512 bytes of printable ASCII
 * without spaces, quotes or backslashes.
 * 0, or -1 (bad URL or subject, no private key, exp_s <= 0, OpenSSL failed); out is left as
 * it was on -1. Push services refuse an exp more than 24 hours ahead: the caller picks it. */
int kc_vapid_header(const kc_vapid_t *v, const char *endpoint_url, const char *subject,
                    long long exp_s, kc_buf_t *out);

/* ---- a browser's subscription ---- */

/* Checks a subscription's keys as the browser's PushSubscription.toJSON() gives them:
 * p256dh the base64url (padding tolerated) of a 65-byte uncompressed point that is ON the
 * P-256 curve; auth the base64url (padding tolerated) of exactly 16 bytes. 0, or -1 with a
 * short reason fit for a client in err ("p256dh is not base64url", "p256dh is not a P-256
 * public key", "auth must be 16 bytes", ...). */
int kc_webpush_keys_ok(const char *p256dh, const char *auth, char *err, size_t errlen);

/* Checks a push endpoint URL as a browser hands it over: at most KC_WEBPUSH_ENDPOINT_MAX
 * bytes of printable ASCII (the serialised URL: no white space, control characters or raw
 * non-ASCII bytes), "https://host[:port]/..." with a path, no user info, a port from 1 to
 * 65535 without a leading zero when given. "http://" only when allow_http and the host is a
 * loopback address (127.0.0.0/8, [::1] or localhost): the local stack's fake push service. The notifier may
 * check again what it reads back, so a row written by other means cannot aim its requests
 * elsewhere. 0, or -1 with a short reason fit for a client in err. */
int kc_webpush_endpoint_ok(const char *url, int allow_http, char *err, size_t errlen);

/* ---- message encryption (RFC 8291, RFC 8188 aes128gcm) ---- */

/* Appends to out the whole request body of a push of plain (len bytes, at most
 * KC_WEBPUSH_MAX_PLAIN) to the subscription (p256dh, auth, as kc_webpush_keys_ok takes
 * them): salt (16) | rs (4, big-endian KC_WEBPUSH_RS) | idlen (1) = 65 | keyid = the
 * ephemeral public key (65) | one record, AES-128-GCM of plain || 0x02 (the last record's
 * delimiter, no padding) with its 16-byte tag. A fresh random salt and ephemeral key pair per
 * call; the secrets derived are wiped before returning. Send it with "Content-Encoding:
 * aes128gcm". 0, or -1 (bad keys, too long, OpenSSL failed); out is left as it was on -1. */
int kc_webpush_encrypt(const char *p256dh, const char *auth, const void *plain, size_t len,
                       kc_buf_t *out);
/* The same with the salt and the ephemeral private key (32 raw bytes, big-endian, in
 * [1, n-1]) given: for the tests, so that RFC 8291 Appendix A's example is reproduced byte
 * for byte. Never reuse a (salt, key) pair in production: use kc_webpush_encrypt. */
int kc_webpush_encrypt_with(const char *p256dh, const char *auth, const void *plain, size_t len,
                            const unsigned char salt[16], const unsigned char eph_priv[32],
                            kc_buf_t *out);

/* ---- Standard Webhooks ---- */

/* Appends to out the webhook-signature header value "v1,<base64>" of HMAC-SHA256(key,
 * msg_id "." ts "." body), base64 the standard alphabet with padding. key: the
 * base64-decoded part after "whsec_" (padding tolerated), or, for a secret without that
 * prefix, its bytes as they are. 0, or -1 (NULL or empty secret or msg_id, bad base64 after
 * "whsec_", body NULL with len > 0); out is left as it was on -1. */
int kc_webhook_sign(const char *secret, const char *msg_id, long long ts, const void *body,
                    size_t len, kc_buf_t *out);

#endif
