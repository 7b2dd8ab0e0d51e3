/* test_config.c - kc_config_load: defaults, then KCHAT_* variables, then --flags; checks,
 * error messages, --help, kc_config_free and kc_config_env_name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kchat/config.h"

typedef struct {
    char *name;
    long long port;
    int verbose;
    char *brokers;
    long long retries;
} tcfg_t;

static const kc_cfg_opt_t table[] = {
    {"name", KC_CFG_STR, offsetof(tcfg_t, name), "kchat", 1, 16, "service name"},
    {"port", KC_CFG_INT, offsetof(tcfg_t, port), "8080", 1, 65535, "listen port"},
    {"verbose", KC_CFG_BOOL, offsetof(tcfg_t, verbose), "false", 0, 0, "chatty logs"},
    {"kafka-brokers", KC_CFG_STR, offsetof(tcfg_t, brokers), NULL, 0, 64, "bootstrap servers"},
    {"retries", KC_CFG_INT, offsetof(tcfg_t, retries), "-1", -1, 10, "retries (-1: forever)"},
};

#define NOPT (sizeof(table) / sizeof(table[0]))
#define ARGS(...) ((char *[]){"prog", __VA_ARGS__, NULL})
#define NOARGS ((char *[]){"prog", NULL})
#define ENV(...) ((char *const[]){__VA_ARGS__, NULL})
#define NOENV ((char *const[]){NULL})

typedef struct {
    tcfg_t cfg;
    char err[256];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    kc_config_free(table, NOPT, &f->cfg);
    free(f);
    return 0;
}

static int argc_of(char **argv)
{
    int n = 0;
    while (argv[n])
        n++;
    return n;
}

/* Loads the test table with argv (NULL-terminated) and env; help output is discarded. */
static int load(fixture_t *f, char **argv, char *const *env)
{
    f->err[0] = '\0';
    return kc_config_load(table, NOPT, &f->cfg, argc_of(argv), argv, env, stdout, f->err,
                          sizeof(f->err));
}

/* The message names the option and where the bad value came from. */
static void assert_err_names(const fixture_t *f, const char *opt, const char *source)
{
    if (!strstr(f->err, opt) || !strstr(f->err, source))
        fail_msg("errstr '%s' should name '%s' and '%s'", f->err, opt, source);
}

static void test_defaults_applied(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(load(f, NOARGS, NOENV), KC_CFG_OK);
    assert_string_equal(f->cfg.name, "kchat");
    assert_int_equal(f->cfg.port, 8080);
    assert_int_equal(f->cfg.verbose, 0);
    assert_non_null(f->cfg.brokers); /* NULL default for a string means "" */
    assert_string_equal(f->cfg.brokers, "");
    assert_int_equal(f->cfg.retries, -1);
}

static void test_env_overrides_defaults(void **state)
{
    fixture_t *f = *state;
    char *const *env =
        ENV("PATH=/usr/bin", "KCHAT_PORTX=1", "XKCHAT_PORT=2", "KCHAT_PORT=7", "KCHAT_VERBOSE=yes",
            "KCHAT_KAFKA_BROKERS=b1:9092,b2:9092", "KCHAT_NAME=from-env");
    assert_int_equal(load(f, NOARGS, env), KC_CFG_OK);
    assert_int_equal(f->cfg.port, 7); /* neither KCHAT_PORTX nor XKCHAT_PORT matched */
    assert_int_equal(f->cfg.verbose, 1);
    assert_string_equal(f->cfg.brokers, "b1:9092,b2:9092");
    assert_string_equal(f->cfg.name, "from-env");
    assert_int_equal(f->cfg.retries, -1);
}

static void test_flags_override_env(void **state)
{
    fixture_t *f = *state;
    char *const *env = ENV("KCHAT_PORT=7", "KCHAT_NAME=from-env", "KCHAT_RETRIES=3");
    assert_int_equal(load(f, ARGS("--port=9", "--name", "from-flag"), env), KC_CFG_OK);
    assert_int_equal(f->cfg.port, 9);
    assert_string_equal(f->cfg.name, "from-flag");
    assert_int_equal(f->cfg.retries, 3); /* env still applies where no flag is given */
}

static void test_last_flag_wins(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(load(f, ARGS("--port=1", "--port", "2", "--name=a", "--name=b"), NOENV),
                     KC_CFG_OK);
    assert_int_equal(f->cfg.port, 2);
    assert_string_equal(f->cfg.name, "b");
}

static void test_value_with_equals_sign(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(load(f, ARGS("--kafka-brokers=a=b"), NOENV), KC_CFG_OK);
    assert_string_equal(f->cfg.brokers, "a=b");
}

static void test_bare_bool_flag_means_true(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(load(f, ARGS("--verbose"), ENV("KCHAT_VERBOSE=false")), KC_CFG_OK);
    assert_int_equal(f->cfg.verbose, 1);
    /* a bare boolean followed by another flag */
    assert_int_equal(load(f, ARGS("--verbose", "--port", "3"), NOENV), KC_CFG_OK);
    assert_int_equal(f->cfg.verbose, 1);
    assert_int_equal(f->cfg.port, 3);
}

static void test_bool_spellings(void **state)
{
    fixture_t *f = *state;
    static const struct {
        const char *arg;
        int want;
    } cases[] = {
        {"--verbose=true", 1}, {"--verbose=false", 0}, {"--verbose=1", 1},    {"--verbose=0", 0},
        {"--verbose=yes", 1},  {"--verbose=no", 0},    {"--verbose=TRUE", 1}, {"--verbose=No", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(load(f, ARGS((char *)cases[i].arg), NOENV), KC_CFG_OK);
        assert_int_equal(f->cfg.verbose, cases[i].want);
    }
}

static void test_int_bounds_inclusive(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(load(f, ARGS("--port=1", "--retries=-1"), NOENV), KC_CFG_OK);
    assert_int_equal(f->cfg.port, 1);
    assert_int_equal(load(f, ARGS("--port=65535", "--retries=10"), NOENV), KC_CFG_OK);
    assert_int_equal(f->cfg.port, 65535);
    assert_int_equal(f->cfg.retries, 10);
}

static void test_int_below_min_from_flag(void **state)
{
    fixture_t *f = *state;
    assert_true(load(f, ARGS("--port=0"), NOENV) < 0);
    assert_err_names(f, "port", "--port");
    assert_true(load(f, ARGS("--retries", "-2"), NOENV) < 0);
    assert_err_names(f, "retries", "--retries");
}

static void test_int_above_max_from_env(void **state)
{
    fixture_t *f = *state;
    assert_true(load(f, NOARGS, ENV("KCHAT_PORT=70000")) < 0);
    assert_err_names(f, "port", "KCHAT_PORT");
}

static void test_int_overflow(void **state)
{
    fixture_t *f = *state;
    assert_true(load(f, ARGS("--port=99999999999999999999999"), NOENV) < 0);
    assert_err_names(f, "port", "--port");
}

static void test_not_an_integer(void **state)
{
    fixture_t *f = *state;
    static const char *const bad[] = {"--port=12ab", "--port=abc", "--port=", "--port=1.5",
                                      "--port=0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (load(f, ARGS((char *)bad[i]), NOENV) >= 0)
            fail_msg("'%s' was accepted", bad[i]);
        assert_err_names(f, "port", "--port");
    }
    assert_true(load(f, NOARGS, ENV("KCHAT_RETRIES=three")) < 0);
    assert_err_names(f, "retries", "KCHAT_RETRIES");
}

static void test_string_too_long_or_short(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(load(f, ARGS("--name=0123456789abcdef"), NOENV), KC_CFG_OK); /* 16: max */
    assert_true(load(f, ARGS("--name=0123456789abcdefg"), NOENV) < 0);
    assert_err_names(f, "name", "--name");
    assert_true(load(f, NOARGS, ENV("KCHAT_NAME=")) < 0); /* shorter than min 1 */
    assert_err_names(f, "name", "KCHAT_NAME");
    char longv[128] = "KCHAT_KAFKA_BROKERS=";
    memset(longv + strlen(longv), 'b', 65);
    assert_true(load(f, NOARGS, ENV(longv)) < 0);
    assert_err_names(f, "kafka-brokers", "KCHAT_KAFKA_BROKERS");
}

static void test_bad_boolean(void **state)
{
    fixture_t *f = *state;
    assert_true(load(f, ARGS("--verbose=maybe"), NOENV) < 0);
    assert_err_names(f, "verbose", "--verbose");
    assert_true(load(f, NOARGS, ENV("KCHAT_VERBOSE=2")) < 0);
    assert_err_names(f, "verbose", "KCHAT_VERBOSE");
}

static void test_unknown_option(void **state)
{
    fixture_t *f = *state;
    assert_true(load(f, ARGS("--nope=1"), NOENV) < 0);
    assert_non_null(strstr(f->err, "nope"));
    /* a prefix of a real option is not that option */
    assert_true(load(f, ARGS("--po=1"), NOENV) < 0);
    assert_non_null(strstr(f->err, "po"));
}

static void test_missing_value(void **state)
{
    fixture_t *f = *state;
    assert_true(load(f, ARGS("--port"), NOENV) < 0);
    assert_non_null(strstr(f->err, "port"));
    assert_true(load(f, ARGS("--name"), NOENV) < 0);
    assert_non_null(strstr(f->err, "name"));
}

static void test_positional_argument_rejected(void **state)
{
    fixture_t *f = *state;
    assert_true(load(f, ARGS("extra"), NOENV) < 0);
    assert_non_null(strstr(f->err, "extra"));
    assert_true(load(f, ARGS("--port=5", "-x"), NOENV) < 0);
    assert_non_null(strstr(f->err, "-x"));
}

static void test_bad_default_is_reported(void **state)
{
    (void)state;
    static const kc_cfg_opt_t bad[] = {
        {"level", KC_CFG_INT, 0, "99", 0, 9, "a level"},
    };
    long long v = 0;
    char err[256] = "";
    assert_true(kc_config_load(bad, 1, &v, 1, NOARGS, NOENV, stdout, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "level"));
    assert_non_null(strstr(err, "default"));
}

/* Runs a --help style argument with output captured in memory; returns the text (caller frees). */
static char *help_text(fixture_t *f, const char *arg, int *rc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    char *argv[] = {"kchat-test", (char *)arg, NULL};
    *rc = kc_config_load(table, NOPT, &f->cfg, 2, argv, NOENV, out, f->err, sizeof(f->err));
    assert_int_equal(fclose(out), 0);
    return text;
}

static void test_help_prints_table(void **state)
{
    fixture_t *f = *state;
    static const char *const args[] = {"--help", "-h"};
    for (size_t i = 0; i < 2; i++) {
        int rc;
        char *text = help_text(f, args[i], &rc);
        assert_int_equal(rc, KC_CFG_EXIT_HELP);
        assert_non_null(strstr(text, "kchat-test"));
        assert_non_null(strstr(text, "--port"));
        assert_non_null(strstr(text, "KCHAT_PORT"));
        assert_non_null(strstr(text, "KCHAT_KAFKA_BROKERS"));
        assert_non_null(strstr(text, "KCHAT_VERBOSE"));
        assert_non_null(strstr(text, "listen port"));
        assert_non_null(strstr(text, "8080"));
        assert_non_null(strstr(text, "1..65535"));
        free(text);
    }
}

static void test_help_markdown(void **state)
{
    fixture_t *f = *state;
    int rc;
    char *text = help_text(f, "--help-markdown", &rc);
    assert_int_equal(rc, KC_CFG_EXIT_HELP);
    assert_non_null(strstr(text, "| flag | environment |"));
    assert_non_null(strstr(text, "|---|"));
    assert_non_null(strstr(text, "| `--port` | `KCHAT_PORT` | `8080` |"));
    assert_non_null(strstr(text, "| `--kafka-brokers` | `KCHAT_KAFKA_BROKERS` | (empty) |"));
    /* one row per option after the two header lines */
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2 + NOPT);
    free(text);
}

static void test_free_releases_strings(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(load(f, ARGS("--name=x", "--kafka-brokers=k:1"), NOENV), KC_CFG_OK);
    kc_config_free(table, NOPT, &f->cfg);
    assert_null(f->cfg.name);
    assert_null(f->cfg.brokers);
    kc_config_free(table, NOPT, &f->cfg); /* twice is harmless */
    /* a partly filled config after an error is freed too (ASan checks for the leak) */
    assert_true(load(f, ARGS("--name=y", "--port=0"), NOENV) < 0);
    assert_string_equal(f->cfg.name, "y");
}

static void test_process_environment_when_null(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(setenv("KCHAT_PORT", "4242", 1), 0);
    char *argv[] = {"prog", NULL};
    int rc = kc_config_load(table, NOPT, &f->cfg, 1, argv, NULL, stdout, f->err, sizeof(f->err));
    assert_int_equal(unsetenv("KCHAT_PORT"), 0);
    assert_int_equal(rc, KC_CFG_OK);
    assert_int_equal(f->cfg.port, 4242);
}

static void test_env_name(void **state)
{
    (void)state;
    char out[64];
    kc_config_env_name("kafka-brokers", out, sizeof(out));
    assert_string_equal(out, "KCHAT_KAFKA_BROKERS");
    kc_config_env_name("port", out, sizeof(out));
    assert_string_equal(out, "KCHAT_PORT");
    kc_config_env_name("shutdown-timeout-ms", out, sizeof(out));
    assert_string_equal(out, "KCHAT_SHUTDOWN_TIMEOUT_MS");
    /* a short buffer gets a truncated, terminated name */
    char small[8];
    kc_config_env_name("kafka-brokers", small, sizeof(small));
    assert_string_equal(small, "KCHAT_K");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_defaults_applied),
        T(test_env_overrides_defaults),
        T(test_flags_override_env),
        T(test_last_flag_wins),
        T(test_value_with_equals_sign),
        T(test_bare_bool_flag_means_true),
        T(test_bool_spellings),
        T(test_int_bounds_inclusive),
        T(test_int_below_min_from_flag),
        T(test_int_above_max_from_env),
        T(test_int_overflow),
        T(test_not_an_integer),
        T(test_string_too_long_or_short),
        T(test_bad_boolean),
        T(test_unknown_option),
        T(test_missing_value),
        T(test_positional_argument_rejected),
        T(test_bad_default_is_reported),
        T(test_help_prints_table),
        T(test_help_markdown),
        T(test_free_releases_strings),
        T(test_process_environment_when_null),
        T(test_env_name),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
