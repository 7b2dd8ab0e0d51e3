/* auth.c - accounts and tokens: register, login, refresh.
 *
 * Passwords are stored as Argon2id strings (libsodium crypto_pwhash_str, with the options'
 * opslimit and memlimit) and checked with crypto_pwhash_str_verify. Both are slow by design,
 * so they run on libuv's thread pool (uv_queue_work), never on the loop, and at most
 * pwhash-max-inflight at a time: beyond that a request is answered 503 at once rather than
 * queued behind minutes of hashing. A login for an unknown user verifies against a dummy
 * hash, so its timing does not tell which usernames exist.
 *
 * Access tokens are RS256 JWTs (lib/jwt.c). Refresh tokens are opaque ("rt_" + 32 random
 * bytes, base64url); only their SHA-256 is stored, with a family id shared by every token
 * rotated from one login. A refresh marks its token used and issues the next one of the
 * family in one statement; presenting a token already used (a stolen copy, or the thief's
 * after the owner's) revokes the whole family.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "kchat/log.h"

#define RT_PREFIX "rt_"
#define RT_RANDOM 32
#define RT_LEN (3 + 43) /* prefix + unpadded base64url of 32 bytes */

static char dummy_hash[crypto_pwhash_STRBYTES];

typedef struct {
    uv_work_t work;
    api_req_t *r;
    int verify; /* 0: hash pw into hash; 1: check pw against hash */
    unsigned long long ops;
    size_t mem;
    char pw[API_PASSWORD_MAX + 1];
    char hash[crypto_pwhash_STRBYTES];
    int rc;
    /* the account */
    int found;
    char user_id[KC_ID_MAX];
    char username[API_USERNAME_MAX + 1];
    char family_id[40];
} auth_state_t;

static void state_free(void *p)
{
    sodium_memzero(p, sizeof(auth_state_t));
    free(p);
}

static auth_state_t *state_of(api_req_t *r)
{
    auth_state_t *s = kc_xcalloc(1, sizeof(*s));
    s->r = r;
    s->ops = (unsigned long long)r->a->cfg.pwhash_opslimit;
    s->mem = (size_t)r->a->cfg.pwhash_memlimit_kib * 1024u;
    r->state = s;
    r->state_free = state_free;
    return s;
}

int api_auth_init(api_t *a, char *err, size_t errlen)
{
    unsigned char rnd[32];
    char pw[65];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(pw, sizeof(pw), rnd, sizeof(rnd));
    if (crypto_pwhash_str(dummy_hash, pw, strlen(pw), (unsigned long long)a->cfg.pwhash_opslimit,
                          (size_t)a->cfg.pwhash_memlimit_kib * 1024u) != 0) {
        kc_strlcpyf(err, errlen, "cannot hash a password with these pwhash limits");
        return -1;
    }
    a->pwhash_gauge = kc_metrics_gauge(a->app.metrics, "kchat_api_pwhash_inflight",
                                       "Password hashes or checks running on the thread pool.",
                                       NULL);
    return 0;
}

/* ---- checks of the input ---- */

int api_username_ok(const char *u)
{
    size_t n = strlen(u);
    if (n < 1 || n > API_USERNAME_MAX || !kc_utf8_valid(u, n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c >= 0x80) {
            if (c == 0xC2 && i + 1 < n && (unsigned char)u[i + 1] <= 0x9F)
                return 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* Reads {username, password}; 0, or -1 after answering. */
static int read_credentials(api_req_t *r, auth_state_t *s, int registering)
{
    const char *u = api_json_str(r->body, "username");
    const char *p = api_json_str(r->body, "password");
    if (!u || !p) {
        api_error(r, 400, "invalid_request", "username and password (strings) are required");
        return -1;
    }
    size_t pl = strlen(p);
    if (registering) {
        if (!api_username_ok(u)) {
            api_error(r, 400, "invalid_username",
                      "a username is 1 to 64 bytes of letters, digits, '_', '.', '-' or "
                      "non-ASCII characters");
            return -1;
        }
        if (pl < API_PASSWORD_MIN || pl > API_PASSWORD_MAX) {
            api_error(r, 400, "invalid_password", "a password is 8 to 1024 bytes");
            return -1;
        }
    } else if (!api_username_ok(u) || pl < 1 || pl > API_PASSWORD_MAX) {
        api_error(r, 401, "invalid_credentials", "wrong username or password");
        return -1;
    }
    memcpy(s->pw, p, pl + 1);
    (void)kc_strlcpyf(s->username, sizeof(s->username), "%s", u);
    return 0;
}

/* ---- the thread pool ---- */

static void pw_work(uv_work_t *w)
{
    auth_state_t *s = w->data;
    if (s->verify)
        s->rc = crypto_pwhash_str_verify(s->hash, s->pw, strlen(s->pw));
    else
        s->rc = crypto_pwhash_str(s->hash, s->pw, strlen(s->pw), s->ops, s->mem);
    sodium_memzero(s->pw, sizeof(s->pw));
}

static void after_register_hash(uv_work_t *w, int status);
static void after_login_verify(uv_work_t *w, int status);

static int queue_pw(api_req_t *r, auth_state_t *s, int verify)
{
    api_t *a = r->a;
    if (a->pwhash_inflight >= a->cfg.pwhash_max_inflight) {
        api_error(r, 503, "busy", "too many logins at once; retry in a moment");
        return -1;
    }
    s->verify = verify;
    s->work.data = s;
    if (uv_queue_work(a->app.loop, &s->work, pw_work,
                      verify ? after_login_verify : after_register_hash) != 0) {
        api_error(r, 503, "busy", "cannot queue the password work");
        return -1;
    }
    a->pwhash_inflight++;
    kc_gauge_set(a->pwhash_gauge, a->pwhash_inflight);
    return 0;
}

static void pw_done(api_t *a)
{
    a->pwhash_inflight--;
    kc_gauge_set(a->pwhash_gauge, a->pwhash_inflight);
}

/* ---- register ---- */

static void on_user_inserted(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    auth_state_t *s = r->state;
    if (err) {
        const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (st && strcmp(st, "23505") == 0)
            api_error(r, 409, "username_taken", "that username is taken");
        else
            api_error(r, 503, "unavailable", "the account could not be stored");
        return;
    }
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"user_id\":\"");
    kc_buf_json_str(&b, s->user_id, strlen(s->user_id));
    kc_buf_puts(&b, "\",\"username\":\"");
    kc_buf_json_str(&b, s->username, strlen(s->username));
    kc_buf_puts(&b, "\"}");
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("user_id", s->user_id)), "user registered");
    api_reply(r, 201, &b);
}

static void after_register_hash(uv_work_t *w, int status)
{
    auth_state_t *s = w->data;
    api_req_t *r = s->r;
    pw_done(r->a);
    if (status != 0 || s->rc != 0) {
        api_error(r, 503, "unavailable", "the password could not be hashed");
        return;
    }
    if (kc_id_new(s->user_id, sizeof(s->user_id), "u_") != 0) {
        api_error(r, 500, "internal", "cannot make a user id");
        return;
    }
    const char *params[] = {s->user_id, s->username, s->hash};
    (void)api_pg(r,
                 "WITH u AS (INSERT INTO users (user_id, username) VALUES ($1, $2) "
                 "RETURNING user_id) "
                 "INSERT INTO credentials (user_id, password_hash) SELECT user_id, $3 FROM u",
                 3, params, on_user_inserted);
}

void api_auth_register(api_req_t *r)
{
    auth_state_t *s = state_of(r);
    if (read_credentials(r, s, 1) != 0)
        return;
    (void)queue_pw(r, s, 0);
}

/* ---- tokens ---- */

static void new_refresh_token(char out[RT_LEN + 1], char hash_hex[65])
{
    unsigned char rnd[RT_RANDOM];
    randombytes_buf(rnd, sizeof(rnd));
    memcpy(out, RT_PREFIX, 3);
    sodium_bin2base64(out + 3, RT_LEN - 3 + 1, rnd, sizeof(rnd),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)out, RT_LEN);
    sodium_bin2hex(hash_hex, 65, h, sizeof(h));
}

static int refresh_token_hash(const char *tok, char hash_hex[65])
{
    if (strlen(tok) != RT_LEN || strncmp(tok, RT_PREFIX, 3) != 0)
        return -1;
    for (size_t i = 3; i < RT_LEN; i++) {
        char c = tok[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return -1;
    }
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)tok, RT_LEN);
    sodium_bin2hex(hash_hex, 65, h, sizeof(h));
    return 0;
}

/* Answers with the token pair: the access token is signed here, the refresh token was
 * stored by the caller. */
static void reply_tokens(api_req_t *r, const char *user_id, const char *username,
                         const char *refresh)
{
    api_t *a = r->a;
    char err[160];
    char *access = kc_jwt_sign(a->signer, user_id, username, kc_now_ms() / 1000,
                               a->cfg.access_ttl_s, err, sizeof(err));
    if (!access) {
        kc_log_error("cannot sign an access token: %s", err);
        api_error(r, 500, "internal", "cannot sign the access token");
        return;
    }
    kc_buf_t b = {0};
    kc_buf_puts(&b, "{\"access_token\":\"");
    kc_buf_puts(&b, access);
    kc_buf_puts(&b, "\",\"token_type\":\"Bearer\",\"refresh_token\":\"");
    kc_buf_puts(&b, refresh);
    kc_buf_printf(&b, "\",\"expires_in\":%lld,\"refresh_expires_in\":%lld,\"user_id\":\"",
                  a->cfg.access_ttl_s, a->cfg.refresh_ttl_s);
    kc_buf_json_str(&b, user_id, strlen(user_id));
    kc_buf_puts(&b, "\",\"username\":\"");
    kc_buf_json_str(&b, username, strlen(username));
    kc_buf_puts(&b, "\"}");
    free(access);
    api_reply(r, 200, &b);
}

/* ---- login ---- */

static void on_refresh_stored(void *arg, const PGresult *res, const char *err)
{
    (void)res;
    api_req_t *r = arg;
    auth_state_t *s = r->state;
    if (err) {
        api_error(r, 503, "unavailable", "the session could not be stored");
        return;
    }
    /* the plain refresh token was kept in pw, which the hash work no longer needs */
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("user_id", s->user_id)), "login");
    reply_tokens(r, s->user_id, s->username, s->pw);
}

static void after_login_verify(uv_work_t *w, int status)
{
    auth_state_t *s = w->data;
    api_req_t *r = s->r;
    api_t *a = r->a;
    pw_done(a);
    if (status != 0) {
        api_error(r, 503, "unavailable", "the password could not be checked");
        return;
    }
    if (!s->found || s->rc != 0) {
        api_error(r, 401, "invalid_credentials", "wrong username or password");
        return;
    }
    char hash_hex[65], ttl[24];
    new_refresh_token(s->pw, hash_hex);
    kc_uuid4(s->family_id);
    (void)kc_strlcpyf(ttl, sizeof(ttl), "%lld", a->cfg.refresh_ttl_s);
    const char *params[] = {hash_hex, s->family_id, s->user_id, ttl};
    (void)api_pg(r,
                 "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) "
                 "VALUES ($1, $2, $3, now() + make_interval(secs => $4::bigint))",
                 4, params, on_refresh_stored);
}

static void on_login_user(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    auth_state_t *s = r->state;
    if (err) {
        api_error(r, 503, "unavailable", "the account could not be read");
        return;
    }
    const char *hash = dummy_hash;
    if (PQntuples(res) == 1) {
        s->found = 1;
        (void)kc_strlcpyf(s->user_id, sizeof(s->user_id), "%s", PQgetvalue(res, 0, 0));
        hash = PQgetvalue(res, 0, 1);
    }
    if (kc_strlcpyf(s->hash, sizeof(s->hash), "%s", hash) != 0) {
        api_error(r, 500, "internal", "a stored password hash is malformed");
        return;
    }
    (void)queue_pw(r, s, 1);
}

void api_auth_login(api_req_t *r)
{
    auth_state_t *s = state_of(r);
    if (read_credentials(r, s, 0) != 0)
        return;
    if (r->a->pwhash_inflight >= r->a->cfg.pwhash_max_inflight) {
        api_error(r, 503, "busy", "too many logins at once; retry in a moment");
        return;
    }
    const char *params[] = {s->username};
    (void)api_pg(r,
                 "SELECT u.user_id, c.password_hash FROM users u "
                 "JOIN credentials c USING (user_id) WHERE u.username = $1",
                 1, params, on_login_user);
}

/* ---- refresh ---- */

typedef struct {
    char old_hash[65];
    char new_token[RT_LEN + 1];
    char new_hash[65];
} refresh_t;

static void refresh_free(void *p)
{
    sodium_memzero(p, sizeof(refresh_t));
    free(p);
}

static void on_reuse_checked(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    if (err) {
        api_error(r, 503, "unavailable", "the session could not be checked");
        return;
    }
    if (PQntuples(res) > 0) {
        kc_log_kv(KC_LOG_WARN, KC_FIELDS(KC_STR("user_id", PQgetvalue(res, 0, 0))),
                  "a refresh token was used twice: its family is revoked");
        api_error(r, 401, "refresh_token_reused",
                  "this refresh token was already used; every session from its login is "
                  "revoked, log in again");
        return;
    }
    api_error(r, 401, "refresh_token_invalid", "the refresh token is unknown, expired or revoked");
}

static void on_rotated(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    refresh_t *s = r->state;
    if (err) {
        api_error(r, 503, "unavailable", "the session could not be renewed");
        return;
    }
    if (PQntuples(res) == 1) {
        reply_tokens(r, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), s->new_token);
        return;
    }
    /* Not rotated: unknown, expired, revoked, or used already. Used already means someone
     * holds a copy: revoke every live token of the family. */
    const char *params[] = {s->old_hash};
    (void)api_pg(r,
                 "UPDATE refresh_tokens SET revoked_at = now() "
                 "WHERE family_id = (SELECT family_id FROM refresh_tokens "
                 "                   WHERE token_hash = $1 AND used_at IS NOT NULL) "
                 "AND revoked_at IS NULL RETURNING user_id",
                 1, params, on_reuse_checked);
    /* (a family already fully revoked returns no row: the token is then just invalid) */
}

void api_auth_refresh(api_req_t *r)
{
    const char *tok = api_json_str(r->body, "refresh_token");
    if (!tok) {
        api_error(r, 400, "invalid_request", "refresh_token (a string) is required");
        return;
    }
    refresh_t *s = kc_xcalloc(1, sizeof(*s));
    r->state = s;
    r->state_free = refresh_free;
    if (refresh_token_hash(tok, s->old_hash) != 0) {
        api_error(r, 401, "refresh_token_invalid", "the refresh token is malformed");
        return;
    }
    new_refresh_token(s->new_token, s->new_hash);
    char ttl[24];
    (void)kc_strlcpyf(ttl, sizeof(ttl), "%lld", r->a->cfg.refresh_ttl_s);
    const char *params[] = {s->old_hash, s->new_hash, ttl};
    /* One statement: the old token is marked used only if it is live, and the new one
     * joins its family. Two concurrent refreshes with one token: the second waits on the
     * row lock, then finds it used. */
    (void)api_pg(r,
                 "WITH old AS (UPDATE refresh_tokens SET used_at = now() "
                 "  WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL "
                 "  AND expires_at > now() RETURNING family_id, user_id), "
                 "ins AS (INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) "
                 "  SELECT $2, family_id, user_id, now() + make_interval(secs => $3::bigint) "
                 "  FROM old RETURNING user_id) "
                 "SELECT u.user_id, u.username FROM ins JOIN users u USING (user_id)",
                 3, params, on_rotated);
}
