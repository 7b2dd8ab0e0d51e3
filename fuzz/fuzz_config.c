/* fuzz_config.c - a daemon's command line and environment through lib/config.c
 * (kc_config_load).
 *
 * The input is split at NUL bytes into words; its first byte says how many of them (0-15)
 * are command-line arguments, the rest are the environment. The table is the daemons' own
 * shared rows (app.h's KC_CFG_* macros: common, admin, Kafka, Redis, Postgres, tokens,
 * topics) and a few of each type at the edges of their ranges. A load that succeeds must
 * give every option a value of its type, within its bounds, taken from its default, its
 * variable or a flag; the same input loads the same way twice.
 */
#include <limits.h>
#include <string.h>

#include "fuzz.h"
#include "kchat/app.h"
#include "kchat/util.h"

typedef struct {
    kc_common_cfg_t common;
    kc_kafka_cfg_t kafka;
    kc_redis_cfg_t redis;
    kc_pg_cfg_t pg;
    kc_jwt_cfg_t jwt;
    char *schemas_dir, *commands_topic, *events_topic, *deliveries_topic;
    long long any, zero;
    char *empty;
    int flag, other_flag;
} cfg_t;

static const kc_cfg_opt_t opts[] = {
    KC_CFG_COMMON(cfg_t, common),
    KC_CFG_ADMIN(cfg_t, common, "17091"),
    KC_CFG_KAFKA(cfg_t, kafka),
    KC_CFG_REDIS(cfg_t, redis),
    KC_CFG_PG(cfg_t, pg),
    KC_CFG_JWT(cfg_t, jwt, ""),
    KC_CFG_SCHEMAS_DIR(cfg_t, schemas_dir),
    KC_CFG_COMMANDS_TOPIC(cfg_t, commands_topic, "written to"),
    KC_CFG_EVENTS_TOPIC(cfg_t, events_topic, "read from"),
    KC_CFG_DELIVERIES_TOPIC(cfg_t, deliveries_topic, "written to"),
    {"any", KC_CFG_INT, offsetof(cfg_t, any), "-9223372036854775808", LLONG_MIN, LLONG_MAX,
     "every long long"},
    {"zero", KC_CFG_INT, offsetof(cfg_t, zero), "0", 0, 0, "only 0"},
    {"empty", KC_CFG_STR, offsetof(cfg_t, empty), NULL, 0, 0, "only the empty string"},
    {"flag", KC_CFG_BOOL, offsetof(cfg_t, flag), "false", 0, 1, "a boolean"},
    {"other-flag", KC_CFG_BOOL, offsetof(cfg_t, other_flag), "yes", 0, 1, "another"},
};
#define NOPTS KC_ARRAY_LEN(opts)
#define MAX_WORDS 64

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    devnull = fopen("/dev/null", "w");
    CHECK(devnull != NULL);
    return 0;
}

/* Whether text, read as the option's type, is the value the option holds. */
static int holds(const kc_cfg_opt_t *o, const cfg_t *cfg, const char *text)
{
    const char *slot = (const char *)cfg + o->offset;
    if (o->type == KC_CFG_STR) {
        const char *v;
        memcpy(&v, slot, sizeof(v));
        return strcmp(v, text) == 0;
    }
    if (o->type == KC_CFG_INT) {
        long long v;
        memcpy(&v, slot, sizeof(v));
        char *end = NULL;
        return strtoll(text, &end, 10) == v && end != text && *end == '\0';
    }
    return 1; /* booleans: checked for 0/1 below */
}

/* The value came from somewhere: the default, the variable, or a word of the command line
 * (whole, or after "--name="); "true" for a boolean flag without a value. */
static int came_from(const kc_cfg_opt_t *o, const cfg_t *cfg, char **argv, int argc,
                     char *const *env)
{
    if (holds(o, cfg, o->def ? o->def : ""))
        return 1;
    char key[128];
    kc_config_env_name(o->name, key, sizeof(key));
    size_t kl = strlen(key);
    for (char *const *e = env; *e; e++)
        if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=' && holds(o, cfg, *e + kl + 1))
            return 1;
    for (int a = 1; a < argc; a++) {
        const char *eq = strchr(argv[a], '=');
        if (holds(o, cfg, argv[a]) || (eq && holds(o, cfg, eq + 1)))
            return 1;
    }
    return 0;
}

static void check_loaded(const cfg_t *cfg, char **argv, int argc, char *const *env)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const kc_cfg_opt_t *o = &opts[i];
        const char *slot = (const char *)cfg + o->offset;
        if (o->type == KC_CFG_STR) {
            const char *v;
            memcpy(&v, slot, sizeof(v));
            CHECK(v != NULL);
            CHECK((long long)strlen(v) >= o->min && (long long)strlen(v) <= o->max);
        } else if (o->type == KC_CFG_INT) {
            long long v;
            memcpy(&v, slot, sizeof(v));
            CHECK(v >= o->min && v <= o->max);
        } else {
            int v;
            memcpy(&v, slot, sizeof(v));
            CHECK(v == 0 || v == 1);
        }
        CHECK(came_from(o, cfg, argv, argc, env));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t nargs = data[0] % 16;
    /* words: argv[0], the arguments, then the environment, each NUL-terminated */
    char *words[MAX_WORDS + 2] = {"kchat-fuzz"};
    size_t nwords = 1;
    for (size_t at = 1; at <= size && nwords < MAX_WORDS;) {
        const uint8_t *nul = memchr(data + at, '\0', size - at);
        size_t n = nul ? (size_t)(nul - (data + at)) : size - at;
        if (at == size && nwords > 1)
            break;
        words[nwords++] = kc_xstrndup((const char *)data + at, n);
        at += n + 1;
    }
    int argc = (int)(nargs + 1 < nwords ? nargs + 1 : nwords);
    char *argv[MAX_WORDS + 2];
    memcpy(argv, words, (size_t)argc * sizeof(char *));
    argv[argc] = NULL;
    char *env[MAX_WORDS + 2];
    size_t nenv = 0;
    for (size_t i = (size_t)argc; i < nwords; i++)
        env[nenv++] = words[i];
    env[nenv] = NULL;

    int rc[2];
    cfg_t cfg[2];
    char err[2][256];
    for (int k = 0; k < 2; k++) {
        memset(&cfg[k], 0, sizeof(cfg[k]));
        err[k][0] = '\0';
        rc[k] = kc_config_load(opts, NOPTS, &cfg[k], argc, argv, env, devnull, err[k],
                               sizeof(err[k]));
    }
    CHECK(rc[0] == rc[1] && strcmp(err[0], err[1]) == 0);
    CHECK(rc[0] == KC_CFG_OK || rc[0] == KC_CFG_EXIT_HELP || rc[0] < 0);
    if (rc[0] < 0)
        CHECK(err[0][0] != '\0');
    if (rc[0] == KC_CFG_OK) {
        check_loaded(&cfg[0], argv, argc, env);
        CHECK(memcmp(&cfg[0].any, &cfg[1].any, sizeof(cfg[0].any)) == 0);
        CHECK(strcmp(cfg[0].kafka.brokers, cfg[1].kafka.brokers) == 0);
    }
    for (int k = 0; k < 2; k++)
        kc_config_free(opts, NOPTS, &cfg[k]);
    for (size_t i = 1; i < nwords; i++)
        free(words[i]);
    return 0;
}
