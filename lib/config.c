/* config.c - table-driven configuration: defaults, then KCHAT_* variables, then --flags. */
#include "kchat/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kchat/util.h"

extern char **environ;

void kc_config_env_name(const char *name, char *out, size_t out_size)
{
    size_t o = 0;
    const char *prefix = "KCHAT_";
    for (const char *p = prefix; *p && o + 1 < out_size; p++)
        out[o++] = *p;
    for (const char *p = name; *p && o + 1 < out_size; p++)
        out[o++] = (*p == '-') ? '_' : (char)toupper((unsigned char)*p);
    if (out_size)
        out[o < out_size ? o : out_size - 1] = '\0';
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < KC_ARRAY_LEN(yes); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -EINVAL;
}

/* Stores value v into the option's slot, checking type and bounds. */
static int set_value(const kc_cfg_opt_t *o, void *cfg, const char *v, const char *source,
                     char *errstr, size_t errstr_size)
{
    char *slot = (char *)cfg + o->offset;
    switch (o->type) {
    case KC_CFG_STR: {
        size_t len = strlen(v);
        if ((long long)len < o->min || (long long)len > o->max) {
            kc_strlcpyf(errstr, errstr_size,
                        "invalid value for %s (from %s): length %zu is outside [%lld, %lld]",
                        o->name, source, len, o->min, o->max);
            return -EINVAL;
        }
        char **dst = (char **)(void *)slot;
        free(*dst);
        *dst = kc_xstrdup(v);
        return 0;
    }
    case KC_CFG_INT: {
        char *end = NULL;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0') {
            kc_strlcpyf(errstr, errstr_size,
                        "invalid value for %s (from %s): '%.64s' is not an integer", o->name,
                        source, v);
            return -EINVAL;
        }
        if (x < o->min || x > o->max) {
            kc_strlcpyf(errstr, errstr_size,
                        "invalid value for %s (from %s): %lld is outside [%lld, %lld]", o->name,
                        source, x, o->min, o->max);
            return -ERANGE;
        }
        memcpy(slot, &x, sizeof(x));
        return 0;
    }
    case KC_CFG_BOOL: {
        int b;
        if (parse_bool(v, &b) != 0) {
            kc_strlcpyf(errstr, errstr_size,
                        "invalid value for %s (from %s): '%.64s' is not a boolean "
                        "(true/false/1/0/yes/no)",
                        o->name, source, v);
            return -EINVAL;
        }
        memcpy(slot, &b, sizeof(b));
        return 0;
    }
    }
    return -EINVAL;
}

static const kc_cfg_opt_t *find_opt(const kc_cfg_opt_t *table, size_t n, const char *name,
                                    size_t name_len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(table[i].name) == name_len && strncmp(table[i].name, name, name_len) == 0)
            return &table[i];
    return NULL;
}

static const char *env_lookup(char *const *env, const char *key)
{
    size_t kl = strlen(key);
    for (char *const *e = env; e && *e; e++)
        if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=')
            return *e + kl + 1;
    return NULL;
}

int kc_config_load(const kc_cfg_opt_t *table, size_t n, void *cfg, int argc, char **argv,
                   char *const *environ_, FILE *out, char *errstr, size_t errstr_size)
{
    char *const *env = environ_ ? environ_ : environ;
    const char *prog = argc > 0 ? argv[0] : "kchat";
    int rc = KC_CFG_OK;
    /* The value each option ends with: its last flag, else its variable, else its default.
     * Only that value is checked, so a flag can correct a bad inherited variable. */
    const char **flag_val = kc_xcalloc(n ? n : 1, sizeof(char *));

    for (int a = 1; a < argc && rc == KC_CFG_OK; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 ||
            strcmp(arg, "--help-markdown") == 0) {
            kc_config_usage(table, n, prog, strcmp(arg, "--help-markdown") == 0, out);
            rc = KC_CFG_EXIT_HELP;
            break;
        }
        if (strncmp(arg, "--", 2) != 0) {
            kc_strlcpyf(errstr, errstr_size, "unexpected argument '%.64s' (see --help)", arg);
            rc = -EINVAL;
            break;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const kc_cfg_opt_t *o = find_opt(table, n, name, name_len);
        if (!o) {
            kc_strlcpyf(errstr, errstr_size, "unknown option --%.*s (see --help)",
                        (int)(name_len > 64 ? 64 : name_len), name);
            rc = -EINVAL;
            break;
        }
        const char *v;
        if (eq) {
            v = eq + 1;
        } else if (o->type == KC_CFG_BOOL && (a + 1 >= argc || strncmp(argv[a + 1], "--", 2) == 0)) {
            v = "true";
        } else if (a + 1 < argc) {
            v = argv[++a];
        } else {
            kc_strlcpyf(errstr, errstr_size, "option --%s needs a value", o->name);
            rc = -EINVAL;
            break;
        }
        flag_val[o - table] = v;
    }
    for (size_t i = 0; i < n && rc == KC_CFG_OK; i++) {
        const kc_cfg_opt_t *o = &table[i];
        char key[128], source[80];
        kc_config_env_name(o->name, key, sizeof(key));
        const char *v = flag_val[i];
        if (v) {
            kc_strlcpyf(source, sizeof(source), "--%s", o->name);
        } else if ((v = env_lookup(env, key))) {
            kc_strlcpyf(source, sizeof(source), "%s", key);
        } else {
            v = o->def ? o->def : "";
            kc_strlcpyf(source, sizeof(source), "default");
        }
        rc = set_value(o, cfg, v, source, errstr, errstr_size);
    }
    free(flag_val);
    return rc;
}

void kc_config_free(const kc_cfg_opt_t *table, size_t n, void *cfg)
{
    for (size_t i = 0; i < n; i++) {
        if (table[i].type != KC_CFG_STR)
            continue;
        char **dst = (char **)(void *)((char *)cfg + table[i].offset);
        free(*dst);
        *dst = NULL;
    }
}

static void range_text(const kc_cfg_opt_t *o, char *out, size_t size)
{
    switch (o->type) {
    case KC_CFG_INT: kc_strlcpyf(out, size, "%lld..%lld", o->min, o->max); break;
    case KC_CFG_BOOL: kc_strlcpyf(out, size, "true/false"); break;
    case KC_CFG_STR: kc_strlcpyf(out, size, "length %lld..%lld", o->min, o->max); break;
    }
}

void kc_config_usage(const kc_cfg_opt_t *table, size_t n, const char *prog, int markdown,
                     FILE *out)
{
    if (markdown) {
        fprintf(out, "| flag | environment | default | range | meaning |\n");
        fprintf(out, "|---|---|---|---|---|\n");
    } else {
        fprintf(out, "usage: %s [--option=value ...]\n\n", prog);
    }
    for (size_t i = 0; i < n; i++) {
        const kc_cfg_opt_t *o = &table[i];
        char env[128], range[64];
        kc_config_env_name(o->name, env, sizeof(env));
        range_text(o, range, sizeof(range));
        const char *def = o->def && *o->def ? o->def : "";
        if (markdown)
            fprintf(out, "| `--%s` | `%s` | %s%s%s | %s | %s |\n", o->name, env, *def ? "`" : "",
                    *def ? def : "(empty)", *def ? "`" : "", range, o->help);
        else
            fprintf(out, "  --%-28s %s\n      %s [default: %s; %s]\n", o->name, env, o->help,
                    *def ? def : "(empty)", range);
    }
}
