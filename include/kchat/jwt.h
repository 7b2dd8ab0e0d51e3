/* jwt.h - access tokens: RS256 JWTs, signed by kchat-api, verified by every daemon.
 *
 * The verifier pins the algorithm before any signature check: the header is decoded and
 * must name RS256, so `none` and the HS256-with-the-public-key confusion never reach the
 * crypto. Then the signature (libjwt over OpenSSL), then the claims: exp (required), nbf,
 * iss and aud must match, sub must be a user id. The signer holds the private key and is
 * only ever built by kchat-api.
 */
#ifndef KCHAT_JWT_H
#define KCHAT_JWT_H

#include <stddef.h>

#define KC_JWT_MAX_LEN 4096  /* a token longer than this is refused unread */
#define KC_JWT_SUB_MAX 64    /* user ids */
#define KC_JWT_NAME_MAX 64   /* usernames */
#define KC_JWT_ALG "RS256"
#define KC_JWT_MAX_KEYS 4    /* public keys a verifier accepts at once (a rotation needs 2) */

typedef enum {
    KC_JWT_OK = 0,
    KC_JWT_MALFORMED,  /* not three base64url parts, bad JSON, too long */
    KC_JWT_ALG_REFUSED, /* alg other than RS256 (none, HS256, ...) */
    KC_JWT_BAD_SIGNATURE,
    KC_JWT_EXPIRED,
    KC_JWT_NOT_YET_VALID,
    KC_JWT_BAD_ISSUER,
    KC_JWT_BAD_AUDIENCE,
    KC_JWT_BAD_SUBJECT,
} kc_jwt_status_t;

typedef struct {
    char sub[KC_JWT_SUB_MAX + 1];   /* the user id */
    char name[KC_JWT_NAME_MAX + 1]; /* the username, "" when absent */
    long long exp;                  /* seconds since the epoch */
    long long iat;
} kc_jwt_claims_t;

typedef struct kc_jwt_key kc_jwt_key_t;

/* Reads a PEM file of at most 16 KiB: for a verifier, one to KC_JWT_MAX_KEYS public keys
 * (a token verifies when any of them checks its signature, so a key rotation lists the new
 * key beside the old one for a while); for a signer, its private key (the first in the file).
 */
kc_jwt_key_t *kc_jwt_key_load(const char *path, const char *issuer, const char *audience,
                              char *err, size_t errlen);
void kc_jwt_key_free(kc_jwt_key_t *k);

/* Verifies token at time now_s (seconds), allowing leeway_s of clock skew on exp and nbf.
 * Fills *out on KC_JWT_OK; on failure err holds a short reason fit for a client. */
kc_jwt_status_t kc_jwt_verify(const kc_jwt_key_t *k, const char *token, long long now_s,
                              long long leeway_s, kc_jwt_claims_t *out, char *err,
                              size_t errlen);

/* The SHA-256 (hex) of the DER SubjectPublicKeyInfo of k's first key (a signer's private key
 * gives its public half): the same for a key pair whichever side is loaded. 0, or -1. */
int kc_jwt_key_fingerprint(const kc_jwt_key_t *k, char out[65]);

/* A stable short code for a status: "token_expired", "token_invalid", ... */
const char *kc_jwt_status_code(kc_jwt_status_t s);

/* Signs an access token for (sub, name) valid from now_s for ttl_s seconds; returns a
 * malloc'd string, or NULL with err set. */
char *kc_jwt_sign(const kc_jwt_key_t *k, const char *sub, const char *name, long long now_s,
                  long long ttl_s, char *err, size_t errlen);

#endif
