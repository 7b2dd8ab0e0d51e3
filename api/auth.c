/* auth.c - accounts and tokens: register, login, refresh.
 *
 * Passwords are stored as Argon2id strings (libsodium crypto_pwhash_str, with the options'
 * opslimit and memlimit) and checked with crypto_pwhash_str_verify. Both are slow by design,
 * so they run on libuv's thread pool (uv_queue_work), never on the loop, and at most
 * pwhash-max-inflight at a time. The work waits its turn in throttle.c's fair queue, which
 * serves client addresses round-robin: one address flooding logins delays itself, not the
 * others. An address may have pwhash-per-address jobs queued or running and an account one
 * (beyond: 429); the queue holds pwhash-queue-max (beyond: 503 busy). A login for an unknown
 * user verifies against a dummy hash, so its timing does not tell which usernames exist.
 *
 * Guessing is throttled in Redis, so every replica sees the same counts (one script, one
 * round trip, per check; the keys are throttle.h's). Before any hashing, a login is refused
 * 429 while its (account, address) or its address is in a delay: each failure beyond
 * login-fails-per-account-address (per pair) or login-fails-per-address (per address) doubles
 * the delay from 1 s up to login-delay-max-s. An account is never locked: once it has seen
 * login-fails-per-account failures from anywhere, its attempts are paced to one per
 * login-account-pace-ms, so guessing from many addresses is slowed while the owner waits at
 * worst a moment. A successful login clears its (account, address) count. Registration is
 * limited per address per hour. When Redis cannot answer, the throttle fails open (the
 * refusal would lock everyone out): logged at a bounded rate, counted.
 *
 * Access tokens are RS256 JWTs (lib/jwt.c). Refresh tokens are opaque ("rt_" + 32 random
 * bytes, base64url); only their SHA-256 is stored, with a family id shared by every token
 * rotated from one login. A refresh marks its token used and issues the next one of the
 * family in one statement; presenting a token already used (a stolen copy, or the thief's
 * after the owner's) revokes the whole family.
 *
 * Deactivation (POST /users/me/deactivate {password}) takes the login's path, throttle and
 * counts included, with the account of the token: a stolen access token does not make
 * guessing the password any easier. Once the password is right, one UPDATE sets
 * deactivated_at; the trigger on users revokes the refresh tokens, writes UserDeactivated and
 * tells every API instance and gateway (lib/revoked.c). A deactivated account's login is
 * refused with 403 account_deactivated, and only once its password was right.
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
    api_fq_job_t job; /* first: the queue's job is the state */
    uv_work_t work;
    api_req_t *r;
    int verify; /* 0: hash pw into hash; 1: check pw against hash */
    unsigned long long ops;
    size_t mem;
    char pw[API_PASSWORD_MAX + 1];
    char hash[crypto_pwhash_STRBYTES];
    int rc;
    int deactivating; /* POST /users/me/deactivate: the password confirms it */
    /* the account */
    int found;
    int deactivated;
    char user_id[KC_ID_MAX];
    char username[API_USERNAME_MAX + 1];  /* as registered (the display form) */
    char key[API_USERNAME_KEY_MAX + 1]; /* what makes it unique (api/username.h) */
    char family_id[40];
} auth_state_t;

static void pump(api_t *a);
static void refusals_init(api_t *a);

/* Runs when the request is freed: a hashing slot still held (the request was answered while
 * its work was being prepared) is given back. */
static void state_free(void *p)
{
    auth_state_t *s = p;
    api_t *a = s->r->a;
    if (s->job.running) {
        api_fq_done(a->pwq, &s->job);
        pump(a);
    }
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
    if (api_addrset_parse(&a->trusted_proxies, a->cfg.trusted_proxies, err, errlen) != 0)
        return -1;
    a->pwhash_gauge = kc_metrics_gauge(a->app.metrics, "kchat_api_pwhash_inflight",
                                       "Password hashes or checks running on the thread pool.",
                                       NULL);
    a->pwhash_queued_gauge =
        kc_metrics_gauge(a->app.metrics, "kchat_api_pwhash_queued",
                         "Password hashes or checks waiting for a slot.", NULL);
    a->pwhash_jobs = kc_metrics_counter(a->app.metrics, "kchat_api_pwhash_jobs_total",
                                        "Password hashes or checks given a slot.", NULL);
    refusals_init(a);
    a->pwq = api_fq_new((int)a->cfg.pwhash_max_inflight, (int)a->cfg.pwhash_queue_max,
                        (int)a->cfg.pwhash_per_address, 1);
    return 0;
}

void api_auth_close(api_t *a)
{
    api_fq_destroy(a->pwq);
    a->pwq = NULL;
}

/* ---- refusals ---- */

/* Counts one event in counter and logs it (what, with two string fields and the count of
 * lines suppressed since the last) at most once a second. */

/* Why a login or registration is refused before any password work: the reason label of
 * kchat_api_auth_refusals_total. */
typedef enum {
    REFUSED_BUSY,                     /* 503: the fair queue is full */
    REFUSED_ADDRESS_BUSY,             /* its address has pwhash-per-address jobs already */
    REFUSED_ACCOUNT_BUSY,             /* its account has a job already */
    REFUSED_ACCOUNT_ADDRESS_FAILURES, /* (account, address) in a delay */
    REFUSED_ADDRESS_FAILURES,         /* the address in a delay */
    REFUSED_ACCOUNT_PACED,            /* the account's attempts are paced */
    REFUSED_REGISTRATIONS,            /* registrations per address per hour */
    REFUSED_N
} refusal_t;

static const char *const refusal_reasons[REFUSED_N] = {
    [REFUSED_BUSY] = "busy",
    [REFUSED_ADDRESS_BUSY] = "address_busy",
    [REFUSED_ACCOUNT_BUSY] = "account_busy",
    [REFUSED_ACCOUNT_ADDRESS_FAILURES] = "account_address_failures",
    [REFUSED_ADDRESS_FAILURES] = "address_failures",
    [REFUSED_ACCOUNT_PACED] = "account_paced",
    [REFUSED_REGISTRATIONS] = "registrations",
};

static kc_counter_t *refusals(api_t *a, refusal_t why)
{
    const char *lbl[] = {"reason", refusal_reasons[why], NULL};
    return kc_metrics_counter(a->app.metrics, "kchat_api_auth_refusals_total",
                              "Logins and registrations refused before any password work (429 "
                              "throttled, 503 busy), by reason.",
                              lbl);
}

static kc_counter_t *throttle_skipped(api_t *a)
{
    return kc_metrics_counter(a->app.metrics, "kchat_api_auth_throttle_skipped_total",
                              "Throttle checks skipped because Redis did not answer (the "
                              "request was let through).",
                              NULL);
}

/* Creates the series of every reason and of skipped throttle checks, at 0, so that they are
 * there before the first refusal. */
static void refusals_init(api_t *a)
{
    for (int i = 0; i < REFUSED_N; i++)
        (void)refusals(a, (refusal_t)i);
    (void)throttle_skipped(a);
}

/* Answers a refusal (429 or 503, Retry-After from retry_ms), counted by reason. */
static void refuse(api_req_t *r, int status, refusal_t why, const char *code,
                   const char *message, long long retry_ms)
{
    api_t *a = r->a;
    api_count_and_log(refusals(a, why), &a->refusal_log, "auth request refused", "reason",
                  refusal_reasons[why], "client", r->client);
    long long secs = (retry_ms + 999) / 1000;
    api_refuse(r, status, code, message, secs < 1 ? 1 : secs > 86400 ? 86400 : (int)secs);
}

/* Redis did not answer a throttle check: the request goes on unthrottled (fail open). */
static void throttle_unavailable(api_t *a, const char *err)
{
    api_count_and_log(throttle_skipped(a), &a->redis_log,
                  "the login throttle cannot reach Redis: letting requests through", "error", err,
                  "effect", "fail open");
}

/* ---- checks of the input ---- */

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
    const char *why = NULL;
    int named = api_username_prepare(u, s->username, s->key, &why) == 0;
    if (registering) {
        if (!named) {
            api_error(r, 400, "invalid_username", why);
            return -1;
        }
        if (pl < API_PASSWORD_MIN || pl > API_PASSWORD_MAX) {
            api_error(r, 400, "invalid_password", "a password is 8 to 1024 bytes");
            return -1;
        }
    } else if (!named || pl < 1 || pl > API_PASSWORD_MAX) {
        api_error(r, 401, "invalid_credentials", "wrong username or password");
        return -1;
    }
    memcpy(s->pw, p, pl + 1);
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
static void on_login_user(void *arg, const PGresult *res, const char *err);
static void check_login(api_req_t *r, auth_state_t *s);
static void deactivate(api_req_t *r, auth_state_t *s);

static void set_gauges(api_t *a)
{
    kc_gauge_set(a->pwhash_gauge, api_fq_running(a->pwq));
    kc_gauge_set(a->pwhash_queued_gauge, api_fq_queued(a->pwq));
}

/* The hash work of s, whose job holds a slot, goes to the thread pool. */
static void queue_pw(auth_state_t *s)
{
    api_req_t *r = s->r;
    s->work.data = s;
    if (uv_queue_work(r->a->app.loop, &s->work, pw_work,
                      s->verify ? after_login_verify : after_register_hash) != 0)
        api_error(r, 503, "busy", "cannot queue the password work"); /* frees the slot */
}

/* A job got its slot: a login reads the account first, a registration hashes at once. */
static void start_job(auth_state_t *s)
{
    api_req_t *r = s->r;
    kc_counter_inc(r->a->pwhash_jobs);
    if (!s->verify) {
        queue_pw(s);
        return;
    }
    const char *params[] = {s->key};
    (void)api_pg(r,
                 "SELECT u.user_id, c.password_hash, u.username, u.deactivated_at IS NOT NULL "
                 "FROM users u JOIN credentials c USING (user_id) WHERE u.username_key = $1",
                 1, params, on_login_user);
}

/* Starts what may start. A job's failure to start frees its slot and calls pump again:
 * that inner call returns at once and this loop goes on. */
static void pump(api_t *a)
{
    if (a->pumping || !a->pwq)
        return;
    a->pumping = 1;
    api_fq_job_t *job;
    while ((job = api_fq_next(a->pwq)))
        start_job((auth_state_t *)(void *)job);
    a->pumping = 0;
    set_gauges(a);
}

/* The hash of s is done: its slot goes to the next job. */
static void pw_done(auth_state_t *s)
{
    api_t *a = s->r->a;
    api_fq_done(a->pwq, &s->job);
    pump(a);
}

/* Queues the password work of r; refuses (429, 503) when its address, its account or the
 * queue is full. */
static void enqueue(api_req_t *r, auth_state_t *s)
{
    api_t *a = r->a;
    switch (api_fq_push(a->pwq, &s->job, r->client, r->client_is_proxy, s->key)) {
    case API_FQ_OK:
        pump(a);
        return;
    case API_FQ_FULL:
        refuse(r, 503, REFUSED_BUSY, "busy", "too many logins at once; retry in a moment", 1000);
        return;
    case API_FQ_ADDRESS:
        refuse(r, 429, REFUSED_ADDRESS_BUSY, "throttled",
               "too many logins or registrations from this address at once", 1000);
        return;
    case API_FQ_ACCOUNT:
        refuse(r, 429, REFUSED_ACCOUNT_BUSY, "throttled", "this account is already logging in",
               1000);
        return;
    }
}

void api_auth_stop(api_t *a)
{
    api_fq_job_t *job;
    while (a->pwq && (job = api_fq_take(a->pwq)))
        api_error(((auth_state_t *)(void *)job)->r, 503, "stopping", "the server is stopping");
    if (a->pwq)
        set_gauges(a);
}

/* ---- the guessing throttle (Redis) ---- */

/* KEYS: pair, address, account. ARGV: now ms, account failures before pacing, pace ms,
 * whether the address's own count applies (1, 0). Returns {ms to wait, what} ({0, ""}: go
 * on). Takes the account's pacing slot. */
static const char CHECK_LUA[] =
    "local now = tonumber(ARGV[1])\n"
    "local wait, why = 0, ''\n"
    "for i, what in ipairs({'account_address', 'address'}) do\n"
    "  if i == 1 or ARGV[4] == '1' then\n"
    "    local u = tonumber(redis.call('HGET', KEYS[i], 'until') or '0')\n"
    "    if u - now > wait then wait = u - now; why = what end\n"
    "  end\n"
    "end\n"
    "if wait > 0 then return {wait, why} end\n"
    "local n = tonumber(redis.call('HGET', KEYS[3], 'n') or '0')\n"
    "if n >= tonumber(ARGV[2]) then\n"
    "  local nxt = tonumber(redis.call('HGET', KEYS[3], 'next') or '0')\n"
    "  if nxt > now then return {nxt - now, 'account'} end\n"
    "  redis.call('HSET', KEYS[3], 'next', now + tonumber(ARGV[3]))\n"
    "end\n"
    "return {0, ''}\n";

/* KEYS: pair, address, account. ARGV: now ms, pair threshold, address threshold, first
 * delay ms, longest delay ms, window ms, whether the address counts (1, 0). Counts a failure;
 * from the threshold on, each one sets a delay twice the last. A count lives a window past
 * its failure or its delay. */
static const char FAIL_LUA[] =
    "local now, first, top, win = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5]), "
    "tonumber(ARGV[6])\n"
    "for i = 1, 3 do\n"
    "  if i ~= 2 or ARGV[7] == '1' then\n"
    "    local n = redis.call('HINCRBY', KEYS[i], 'n', 1)\n"
    "    local ttl = win\n"
    "    local thr = tonumber(ARGV[i + 1])\n"
    "    if i < 3 and n >= thr then\n"
    "      local d = math.min(first * 2 ^ math.min(n - thr, 40), top)\n"
    "      redis.call('HSET', KEYS[i], 'until', now + d)\n"
    "      ttl = win + d\n"
    "    end\n"
    "    redis.call('PEXPIRE', KEYS[i], ttl)\n"
    "  end\n"
    "end\n"
    "return 0\n";

/* A window counter (registrations per address, people lookups per user): KEYS[1] counts up
 * to ARGV[1] requests per ARGV[2] ms; 0 when this one may go on (counted), else the ms until
 * the window ends. */
static const char WINDOW_LUA[] =
    "local n = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if n >= tonumber(ARGV[1]) then\n"
    "  local t = redis.call('PTTL', KEYS[1])\n"
    "  if t < 1 then t = 1000 end\n"
    "  return t\n"
    "end\n"
    "if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return 0\n";

typedef struct {
    char pair[sizeof(API_THROTTLE_PAIR) + API_USERNAME_KEY_MAX + 1 + KC_HTTP_PEER_MAX];
    char addr[sizeof(API_THROTTLE_ADDR) + KC_HTTP_PEER_MAX];
    char account[sizeof(API_THROTTLE_ACCOUNT) + API_USERNAME_KEY_MAX];
} keys_t;

static void keys_of(const api_req_t *r, const auth_state_t *s, keys_t *k)
{
    (void)kc_strlcpyf(k->pair, sizeof(k->pair), API_THROTTLE_PAIR "%s:%s", s->key, r->client);
    (void)kc_strlcpyf(k->addr, sizeof(k->addr), API_THROTTLE_ADDR "%s", r->client);
    (void)kc_strlcpyf(k->account, sizeof(k->account), API_THROTTLE_ACCOUNT "%s", s->key);
}

static int eval(api_t *a, kc_redis_cb cb, void *arg, const char *script, int nkeys,
                const char *const *args, int nargs)
{
    const char *argv[16];
    char nk[8];
    if (nargs > (int)KC_ARRAY_LEN(argv) - 3)
        return -1;
    (void)kc_strlcpyf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = nk;
    for (int i = 0; i < nargs; i++)
        argv[3 + i] = args[i];
    if (!kc_redis_connected(a->redis))
        return -1;
    return kc_redis_command(a->redis, cb, arg, 3 + nargs, argv, NULL);
}

int api_throttle_window(api_t *a, const char *key, long long limit, long long window_ms,
                        kc_redis_cb cb, void *arg)
{
    char lim[24], win[24];
    (void)kc_strlcpyf(lim, sizeof(lim), "%lld", limit);
    (void)kc_strlcpyf(win, sizeof(win), "%lld", window_ms);
    const char *args[] = {key, lim, win};
    return eval(a, cb, arg, WINDOW_LUA, 1, args, 3);
}

static void on_throttle_write(void *arg, const redisReply *reply, const char *err)
{
    if (err || !reply || reply->type == REDIS_REPLY_ERROR)
        throttle_unavailable(arg, err ? err : reply ? reply->str : "no reply");
}

/* A wrong password (or an unknown account): counted everywhere it counts. */
static void record_failure(api_req_t *r, auth_state_t *s)
{
    api_t *a = r->a;
    keys_t k;
    keys_of(r, s, &k);
    char now[24], pair[24], addr[24], first[24], top[24], win[24];
    (void)kc_strlcpyf(now, sizeof(now), "%lld", (long long)kc_now_ms());
    (void)kc_strlcpyf(pair, sizeof(pair), "%lld", a->cfg.login_fails_per_pair);
    (void)kc_strlcpyf(addr, sizeof(addr), "%lld", a->cfg.login_fails_per_address);
    (void)kc_strlcpyf(first, sizeof(first), "%d", 1000);
    (void)kc_strlcpyf(top, sizeof(top), "%lld", a->cfg.login_delay_max_s * 1000);
    (void)kc_strlcpyf(win, sizeof(win), "%lld", a->cfg.login_fail_window_s * 1000);
    const char *args[] = {k.pair, k.addr,  k.account, now, pair,
                          addr,   first, top,       win, r->client_is_proxy ? "0" : "1"};
    if (eval(a, on_throttle_write, a, FAIL_LUA, 3, args, (int)KC_ARRAY_LEN(args)) != 0)
        throttle_unavailable(a, "not connected");
}

/* The owner got in from this address: its failures there are forgotten. */
static void record_success(api_req_t *r, auth_state_t *s)
{
    keys_t k;
    keys_of(r, s, &k);
    const char *argv[] = {"DEL", k.pair};
    if (!kc_redis_connected(r->a->redis) ||
        kc_redis_command(r->a->redis, on_throttle_write, r->a, 2, argv, NULL) != 0)
        throttle_unavailable(r->a, "not connected");
}

static void on_login_checked(void *arg, const redisReply *reply, const char *err)
{
    api_req_t *r = arg;
    auth_state_t *s = r->state;
    if (err || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        throttle_unavailable(r->a, err ? err : reply && reply->str ? reply->str : "bad reply");
        enqueue(r, s);
        return;
    }
    long long wait = reply->element[0]->integer;
    if (wait <= 0) {
        enqueue(r, s);
        return;
    }
    const char *why = reply->element[1]->str;
    refuse(r, 429,
           strcmp(why, "account") == 0   ? REFUSED_ACCOUNT_PACED
           : strcmp(why, "address") == 0 ? REFUSED_ADDRESS_FAILURES
                                         : REFUSED_ACCOUNT_ADDRESS_FAILURES,
           "throttled", "too many failed logins; retry after the delay", wait);
}

static void on_register_checked(void *arg, const redisReply *reply, const char *err)
{
    api_req_t *r = arg;
    auth_state_t *s = r->state;
    if (err || !reply || reply->type != REDIS_REPLY_INTEGER) {
        throttle_unavailable(r->a, err ? err : reply && reply->str ? reply->str : "bad reply");
        enqueue(r, s);
        return;
    }
    if (reply->integer > 0) {
        refuse(r, 429, REFUSED_REGISTRATIONS, "throttled",
               "too many registrations from this address; retry later", reply->integer);
        return;
    }
    enqueue(r, s);
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
    kc_buf_puts(&b, "\",\"display_name\":\"\"}"); /* a new user has none yet */
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("user_id", s->user_id)), "user registered");
    api_reply(r, 201, &b);
}

static void after_register_hash(uv_work_t *w, int status)
{
    auth_state_t *s = w->data;
    api_req_t *r = s->r;
    pw_done(s);
    if (status != 0 || s->rc != 0) {
        api_error(r, 503, "unavailable", "the password could not be hashed");
        return;
    }
    if (kc_id_new(s->user_id, sizeof(s->user_id), "u_") != 0) {
        api_error(r, 500, "internal", "cannot make a user id");
        return;
    }
    const char *params[] = {s->user_id, s->username, s->hash, s->key};
    (void)api_pg(r,
                 "WITH u AS (INSERT INTO users (user_id, username, username_key) "
                 "VALUES ($1, $2, $4) RETURNING user_id) "
                 "INSERT INTO credentials (user_id, password_hash) SELECT user_id, $3 FROM u",
                 4, params, on_user_inserted);
}

void api_auth_register(api_req_t *r)
{
    auth_state_t *s = state_of(r);
    if (read_credentials(r, s, 1) != 0)
        return;
    api_t *a = r->a;
    if (r->client_is_proxy) { /* the per-address limit is all there is */
        enqueue(r, s);
        return;
    }
    char key[sizeof(API_THROTTLE_REGISTER) + KC_HTTP_PEER_MAX];
    (void)kc_strlcpyf(key, sizeof(key), API_THROTTLE_REGISTER "%s", r->client);
    if (api_throttle_window(a, key, a->cfg.register_per_address_hour, 3600000,
                            on_register_checked, r) != 0) {
        throttle_unavailable(a, "not connected");
        enqueue(r, s);
    }
}

/* ---- the audit log ---- */

/* The detail of an action of r's client into d: what the client says it is (its User-Agent,
 * kept at the handler's start) and extra, a "key":"value" pair when key is not NULL. */
static const char *client_detail(api_req_t *r, kc_buf_t *d, const char *key, const char *value)
{
    if (r->user_agent[0])
        api_audit_detail(d, "user_agent", r->user_agent);
    if (key)
        api_audit_detail(d, key, value);
    return api_audit_detail_end(d);
}

static void audit(api_req_t *r, const char *action, const char *actor_id, const char *target,
                  const char *key, const char *value)
{
    kc_buf_t d = {0};
    api_audit(r->a, action, actor_id, target, r->client, client_detail(r, &d, key, value));
    kc_buf_free(&d);
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

/* A signed access token (malloc'd), or NULL after answering 500. */
static char *sign_access(api_req_t *r, const char *user_id, const char *username)
{
    api_t *a = r->a;
    char err[160];
    char *access = kc_jwt_sign(a->signer, user_id, username, kc_now_ms() / 1000,
                               a->cfg.access_ttl_s, err, sizeof(err));
    if (!access) {
        kc_log_error("cannot sign an access token: %s", err);
        api_error(r, 500, "internal", "cannot sign the access token");
    }
    return access;
}

/* Answers with the token pair: access (taken) from sign_access, the refresh token stored by
 * the caller. */
static void reply_tokens(api_req_t *r, char *access, const char *user_id, const char *username,
                         const char *refresh)
{
    api_t *a = r->a;
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
    api_req_t *r = arg;
    auth_state_t *s = r->state;
    if (err) {
        api_error(r, 503, "unavailable", "the session could not be stored");
        return;
    }
    if (strcmp(PQcmdTuples((PGresult *)res), "1") != 0) { /* deactivated meanwhile */
        api_error(r, 403, "account_deactivated", "this account was deactivated");
        return;
    }
    char *access = sign_access(r, s->user_id, s->username);
    if (!access)
        return;
    /* the plain refresh token was kept in pw, which the hash work no longer needs */
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("user_id", s->user_id)), "login");
    audit(r, "login", s->user_id, s->user_id, NULL, NULL);
    reply_tokens(r, access, s->user_id, s->username, s->pw);
}

/* ---- deactivation ---- */

static void on_deactivated(void *arg, const PGresult *res, const char *err)
{
    (void)res;
    api_req_t *r = arg;
    if (err) {
        api_error(r, 503, "unavailable", "the account could not be deactivated");
        return;
    }
    kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("user_id", r->user_id)), "account deactivated");
    kc_buf_t none = {0};
    api_reply(r, 204, &none);
}

/* The password was right: the account of the token ends (again is no error). */
static void deactivate(api_req_t *r, auth_state_t *s)
{
    if (strcmp(s->user_id, r->user_id) != 0) { /* its username moved meanwhile */
        api_error(r, 409, "conflict", "the account changed meanwhile: retry");
        return;
    }
    /* the trigger writes the audit event, with where from as these settings say */
    kc_buf_t d = {0};
    const char *params[] = {r->user_id, r->client, client_detail(r, &d, NULL, NULL)};
    (void)api_pg(r,
                 "WITH s AS (SELECT set_config('kchat.source', $2, true), "
                 "  set_config('kchat.detail', $3, true)) "
                 "UPDATE users SET deactivated_at = now() FROM s "
                 "WHERE user_id = $1 AND deactivated_at IS NULL",
                 3, params, on_deactivated);
    kc_buf_free(&d);
}

static void on_deactivating_user(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    auth_state_t *s = r->state;
    if (err) {
        api_error(r, 503, "unavailable", "the account could not be read");
        return;
    }
    if (PQntuples(res) != 1) {
        api_error(r, 401, "token_revoked", "the account was deactivated");
        return;
    }
    (void)kc_strlcpyf(s->key, sizeof(s->key), "%s", PQgetvalue(res, 0, 0));
    check_login(r, s);
}

void api_auth_deactivate(api_req_t *r)
{
    const char *p = api_json_str(r->body, "password");
    size_t pl = p ? strlen(p) : 0;
    if (!p || pl < 1 || pl > API_PASSWORD_MAX) {
        api_error(r, 400, "invalid_request", "password (a string of 1 to 1024 bytes) is required");
        return;
    }
    api_keep_user_agent(r);
    auth_state_t *s = state_of(r);
    memcpy(s->pw, p, pl + 1);
    s->verify = 1;
    s->deactivating = 1;
    const char *params[] = {r->user_id};
    (void)api_pg(r, "SELECT username_key FROM users WHERE user_id = $1 AND deactivated_at IS NULL",
                 1, params, on_deactivating_user);
}

static void after_login_verify(uv_work_t *w, int status)
{
    auth_state_t *s = w->data;
    api_req_t *r = s->r;
    api_t *a = r->a;
    pw_done(s);
    if (status != 0) {
        api_error(r, 503, "unavailable", "the password could not be checked");
        return;
    }
    if (!s->found || s->rc != 0) {
        record_failure(r, s);
        audit(r, "login_failed", s->deactivating ? r->user_id : NULL,
              s->found ? s->user_id : NULL,
              s->deactivating ? "during" : "username",
              s->deactivating ? "deactivation" : s->username);
        if (s->deactivating)
            api_error(r, 403, "wrong_password", "the password is wrong: nothing was changed");
        else
            api_error(r, 401, "invalid_credentials", "wrong username or password");
        return;
    }
    record_success(r, s);
    if (s->deactivating) {
        deactivate(r, s);
        return;
    }
    if (s->deactivated) {
        kc_log_kv(KC_LOG_INFO, KC_FIELDS(KC_STR("user_id", s->user_id)),
                  "login refused: the account is deactivated");
        api_error(r, 403, "account_deactivated", "this account was deactivated");
        return;
    }
    char hash_hex[65], ttl[24];
    new_refresh_token(s->pw, hash_hex);
    kc_uuid4(s->family_id);
    (void)kc_strlcpyf(ttl, sizeof(ttl), "%lld", a->cfg.refresh_ttl_s);
    const char *params[] = {hash_hex, s->family_id, s->user_id, ttl};
    /* only while the account is active, the row share-locked: a deactivation waits for this
     * insert and then revokes its token, or this waits for it and inserts nothing */
    (void)api_pg(r,
                 "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) "
                 "SELECT $1, $2, user_id, now() + make_interval(secs => $4::bigint) FROM users "
                 "WHERE user_id = $3 AND deactivated_at IS NULL FOR SHARE",
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
        /* the name as registered: the token carries it, not the spelling typed now */
        (void)kc_strlcpyf(s->username, sizeof(s->username), "%s", PQgetvalue(res, 0, 2));
        s->deactivated = PQgetvalue(res, 0, 3)[0] == 't';
    }
    if (kc_strlcpyf(s->hash, sizeof(s->hash), "%s", hash) != 0) {
        api_error(r, 500, "internal", "a stored password hash is malformed");
        return;
    }
    queue_pw(s);
}

/* The throttle's word on a password check of s's account from r's address, then the queue. */
static void check_login(api_req_t *r, auth_state_t *s)
{
    api_t *a = r->a;
    keys_t k;
    keys_of(r, s, &k);
    char now[24], after[24], pace[24];
    (void)kc_strlcpyf(now, sizeof(now), "%lld", (long long)kc_now_ms());
    (void)kc_strlcpyf(after, sizeof(after), "%lld", a->cfg.login_fails_per_account);
    (void)kc_strlcpyf(pace, sizeof(pace), "%lld", a->cfg.login_account_pace_ms);
    const char *args[] = {k.pair, k.addr, k.account, now, after, pace,
                          r->client_is_proxy ? "0" : "1"};
    if (eval(a, on_login_checked, r, CHECK_LUA, 3, args, (int)KC_ARRAY_LEN(args)) != 0) {
        throttle_unavailable(a, "not connected");
        enqueue(r, s);
    }
}

void api_auth_login(api_req_t *r)
{
    api_keep_user_agent(r);
    auth_state_t *s = state_of(r);
    if (read_credentials(r, s, 0) != 0)
        return;
    s->verify = 1;
    check_login(r, s);
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
        audit(r, "refresh_token_reused", NULL, PQgetvalue(res, 0, 0), "family_id",
              PQgetvalue(res, 0, 1));
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
        char *access = sign_access(r, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
        if (access)
            reply_tokens(r, access, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
                         s->new_token);
        return;
    }
    /* Not rotated: unknown, expired, revoked, or used already. Used already means someone
     * holds a copy: revoke every live token of the family. */
    const char *params[] = {s->old_hash};
    (void)api_pg(r,
                 "UPDATE refresh_tokens SET revoked_at = now() "
                 "WHERE family_id = (SELECT family_id FROM refresh_tokens "
                 "                   WHERE token_hash = $1 AND used_at IS NOT NULL) "
                 "AND revoked_at IS NULL RETURNING user_id, family_id",
                 1, params, on_reuse_checked);
    /* (a family already fully revoked returns no row: the token is then just invalid) */
}

void api_auth_refresh(api_req_t *r)
{
    api_keep_user_agent(r);
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
    /* One statement: the old token is marked used only if it is live and its account active
     * (share-locked, as at login), and the new one joins its family. Two concurrent refreshes with one token: the second waits on the
     * row lock, then finds it used. */
    (void)api_pg(r,
                 "WITH old AS (UPDATE refresh_tokens SET used_at = now() "
                 "  WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL "
                 "  AND expires_at > now() AND EXISTS (SELECT 1 FROM users a "
                 "    WHERE a.user_id = refresh_tokens.user_id AND a.deactivated_at IS NULL "
                 "    FOR SHARE) "
                 "  RETURNING family_id, user_id), "
                 "ins AS (INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) "
                 "  SELECT $2, family_id, user_id, now() + make_interval(secs => $3::bigint) "
                 "  FROM old RETURNING user_id) "
                 "SELECT u.user_id, u.username FROM ins JOIN users u USING (user_id)",
                 3, params, on_rotated);
}
