/* log.h - one JSON object a line on stderr.
 *
 *   {"ts":"2026-11-27T09:30:00.123Z","level":"info","svc":"processor","msg":"assigned",
 *    "topic":"chat.commands","partition":3}
 *
 * Every line is written with a single write(2) of at most KC_LOG_LINE_MAX bytes, so lines
 * from several threads (librdkafka's own threads log too) never interleave. A message that
 * would not fit is cut and marked "truncated":true. Safe to call from any thread once
 * kc_log_init() has run.
 */
#ifndef KCHAT_LOG_H
#define KCHAT_LOG_H

#include <stddef.h>
#include <stdint.h>

#define KC_LOG_LINE_MAX 4096

typedef enum { KC_LOG_DEBUG = 0, KC_LOG_INFO, KC_LOG_WARN, KC_LOG_ERROR } kc_log_level_t;

typedef enum { KC_LF_STR, KC_LF_INT } kc_log_field_type_t;

typedef struct {
    const char *key;
    kc_log_field_type_t type;
    const char *s;
    long long i;
} kc_log_field_t;

#define KC_STR(k, v) ((kc_log_field_t){.key = (k), .type = KC_LF_STR, .s = (v)})
#define KC_INT(k, v) ((kc_log_field_t){.key = (k), .type = KC_LF_INT, .i = (long long)(v)})
/* KC_FIELDS(KC_STR("topic", t), KC_INT("partition", p)) expands to "array, count". */
#define KC_FIELDS(...)                                                                            \
    (const kc_log_field_t[]){__VA_ARGS__},                                                        \
        sizeof((const kc_log_field_t[]){__VA_ARGS__}) / sizeof(kc_log_field_t)

/* svc is copied. Lines below min_level are dropped. */
void kc_log_init(const char *svc, kc_log_level_t min_level);
void kc_log_set_level(kc_log_level_t min_level);
int kc_log_enabled(kc_log_level_t level);
/* Parses "debug", "info", "warn" or "error". Returns 0 or -EINVAL. */
int kc_log_level_parse(const char *s, kc_log_level_t *out);
const char *kc_log_level_name(kc_log_level_t level);

void kc_log_kv(kc_log_level_t level, const kc_log_field_t *fields, size_t nfields, const char *fmt,
               ...) __attribute__((format(printf, 4, 5)));

#define kc_log_debug(...) kc_log_kv(KC_LOG_DEBUG, NULL, 0, __VA_ARGS__)
#define kc_log_info(...) kc_log_kv(KC_LOG_INFO, NULL, 0, __VA_ARGS__)
#define kc_log_warn(...) kc_log_kv(KC_LOG_WARN, NULL, 0, __VA_ARGS__)
#define kc_log_error(...) kc_log_kv(KC_LOG_ERROR, NULL, 0, __VA_ARGS__)

/* A line that a flood would repeat (a refusal, an outage) is written at most once a second,
 * with how many were not written since. Zero-initialised. */
typedef struct {
    uint64_t last_ns; /* 0: never written */
    long long suppressed;
} kc_ratelog_t;

/* 1 when a line may be written at now_ns (then *suppressed is how many were not written
 * since the last one), 0 when this one is to be counted and dropped. */
int kc_ratelog_ok(kc_ratelog_t *l, uint64_t now_ns, long long *suppressed);

/* Routes libwebsockets' log lines into ours (lws_set_log_level with our emitter). */
void kc_log_route_lws(void);
/* The emitter itself, exposed for tests: maps an lws level bit to ours. */
void kc_log_lws_emit(int lws_level, const char *line);

/* Formats one line into out (at most KC_LOG_LINE_MAX bytes, newline included) and returns
 * its length; exposed so tests can check the JSON without capturing stderr. */
size_t kc_log_format(char *out, kc_log_level_t level, const kc_log_field_t *fields, size_t nfields,
                     const char *msg);

#endif
