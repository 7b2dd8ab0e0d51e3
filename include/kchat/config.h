/* config.h - one table per daemon, fed by defaults, then KCHAT_* environment variables, then
 * --flags (the last one wins).
 *
 * A row names an option once ("kafka-brokers"); its flag is --kafka-brokers (or
 * --kafka-brokers=VALUE) and its environment variable KCHAT_KAFKA_BROKERS. Values land in
 * the daemon's own config struct at `offset`: KC_CFG_STR as an owned char * (free with
 * kc_config_free), KC_CFG_INT as long long, KC_CFG_BOOL as int. Every value is checked:
 * integers against [min, max], strings against max length, booleans against
 * true/false/1/0/yes/no. Only the value an option ends with is checked (a flag overrides a
 * bad variable); the first bad one stops the load with a message that names the option and
 * where the value came from.
 */
#ifndef KCHAT_CONFIG_H
#define KCHAT_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef enum { KC_CFG_STR, KC_CFG_INT, KC_CFG_BOOL } kc_cfg_type_t;

typedef struct {
    const char *name;
    kc_cfg_type_t type;
    size_t offset;
    const char *def; /* default, as text; NULL for a string means "" */
    long long min;   /* INT: lowest value; STR: shortest length */
    long long max;   /* INT: highest value; STR: longest length */
    const char *help;
} kc_cfg_opt_t;

/* Outcome of kc_config_load besides errors. */
enum { KC_CFG_OK = 0, KC_CFG_EXIT_HELP = 1 };

/* Loads the table into cfg. Returns KC_CFG_OK, KC_CFG_EXIT_HELP after printing --help (or
 * --help-markdown) to out, or a negative value with errstr set. On error cfg may be partly
 * filled: call kc_config_free either way. `environ_` is the environment to read (NULL means
 * the process environment); tests pass their own. */
int kc_config_load(const kc_cfg_opt_t *table, size_t n, void *cfg, int argc, char **argv,
                   char *const *environ_, FILE *out, char *errstr, size_t errstr_size);
void kc_config_free(const kc_cfg_opt_t *table, size_t n, void *cfg);
/* Prints the table as text (--help) or as a Markdown table (--help-markdown). */
void kc_config_usage(const kc_cfg_opt_t *table, size_t n, const char *prog, int markdown,
                     FILE *out);
/* KCHAT_ + the name upper-cased with '-' as '_'. */
void kc_config_env_name(const char *name, char *out, size_t out_size);

#endif
