/* log.c - JSON-lines logging on stderr, one write(2) per line. */
#include "kchat/log.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "kchat/buf.h"

#define MAX_FIELDS 16

static char g_svc[32] = "kchat";
static atomic_int g_min_level = KC_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void kc_log_init(const char *svc, kc_log_level_t min_level)
{
    snprintf(g_svc, sizeof(g_svc), "%s", svc);
    atomic_store(&g_min_level, (int)min_level);
}

void kc_log_set_level(kc_log_level_t min_level)
{
    atomic_store(&g_min_level, (int)min_level);
}

int kc_log_enabled(kc_log_level_t level)
{
    return (int)level >= atomic_load(&g_min_level);
}

const char *kc_log_level_name(kc_log_level_t level)
{
    return (unsigned)level < 4 ? level_names[level] : "error";
}

int kc_log_level_parse(const char *s, kc_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (kc_log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = KC_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

static void build(kc_buf_t *b, kc_log_level_t level, const kc_log_field_t *fields, size_t nfields,
                  const char *msg, size_t msg_max, size_t field_max, int truncated)
{
    struct timespec ts;
    struct tm tm;
    char tbuf[32] = "1970-01-01T00:00:00";
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && gmtime_r(&ts.tv_sec, &tm))
        strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
    else
        ts.tv_nsec = 0;
    kc_buf_printf(b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"svc\":\"", tbuf,
                  ts.tv_nsec / 1000000, kc_log_level_name(level));
    kc_buf_json_str(b, g_svc, strlen(g_svc));
    kc_buf_puts(b, "\",\"msg\":\"");
    size_t ml = strlen(msg);
    kc_buf_json_str(b, msg, ml < msg_max ? ml : msg_max);
    kc_buf_putc(b, '"');
    if (nfields > MAX_FIELDS)
        nfields = MAX_FIELDS;
    for (size_t i = 0; i < nfields; i++) {
        const kc_log_field_t *f = &fields[i];
        kc_buf_puts(b, ",\"");
        kc_buf_json_str(b, f->key, strlen(f->key));
        kc_buf_puts(b, "\":");
        if (f->type == KC_LF_INT) {
            kc_buf_printf(b, "%lld", f->i);
        } else if (!f->s) {
            kc_buf_puts(b, "null");
        } else {
            size_t sl = strlen(f->s);
            kc_buf_putc(b, '"');
            kc_buf_json_str(b, f->s, sl < field_max ? sl : field_max);
            kc_buf_putc(b, '"');
        }
    }
    if (truncated)
        kc_buf_puts(b, ",\"truncated\":true");
    kc_buf_puts(b, "}\n");
}

size_t kc_log_format(char *out, kc_log_level_t level, const kc_log_field_t *fields, size_t nfields,
                     const char *msg)
{
    kc_buf_t b = {0};
    build(&b, level, fields, nfields, msg, (size_t)-1, (size_t)-1, 0);
    /* Too long: cut the message and the string fields, shorter each round, since escaping
     * can make a cut text six times longer (\u0001). */
    for (size_t msg_max = 512, field_max = 64; b.len > KC_LOG_LINE_MAX && msg_max;
         msg_max /= 2, field_max /= 2) {
        kc_buf_reset(&b);
        build(&b, level, fields, nfields, msg, msg_max, field_max, 1);
    }
    size_t n = b.len < KC_LOG_LINE_MAX ? b.len : KC_LOG_LINE_MAX;
    memcpy(out, b.data, n);
    if (n == KC_LOG_LINE_MAX)
        out[n - 1] = '\n';
    kc_buf_free(&b);
    return n;
}

void kc_log_kv(kc_log_level_t level, const kc_log_field_t *fields, size_t nfields, const char *fmt,
               ...)
{
    if (!kc_log_enabled(level))
        return;
    /* As large as a line: a message cut here could not fit in one anyway, so
     * kc_log_format cuts it further and marks it truncated. */
    char msg[KC_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(msg, sizeof(msg), "(unformattable log message)");
    char line[KC_LOG_LINE_MAX];
    size_t len = kc_log_format(line, level, fields, nfields, msg);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(2, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void kc_log_lws_emit(int lws_level, const char *line)
{
    kc_log_level_t lvl = KC_LOG_DEBUG;
    if (lws_level & LLL_ERR)
        lvl = KC_LOG_ERROR;
    else if (lws_level & LLL_WARN)
        lvl = KC_LOG_WARN;
    else if (lws_level & (LLL_NOTICE | LLL_USER))
        lvl = KC_LOG_INFO;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    kc_log_kv(lvl, KC_FIELDS(KC_STR("lib", "libwebsockets")), "%.*s", (int)n, line);
}

void kc_log_route_lws(void)
{
    int mask = LLL_ERR | LLL_WARN | LLL_USER;
    if (kc_log_enabled(KC_LOG_INFO))
        mask |= LLL_NOTICE;
    lws_set_log_level(mask, kc_log_lws_emit);
}

int kc_ratelog_ok(kc_ratelog_t *l, uint64_t now_ns, long long *suppressed)
{
    if (l->last_ns && now_ns - l->last_ns < 1000000000u) {
        l->suppressed++;
        return 0;
    }
    *suppressed = l->suppressed;
    l->suppressed = 0;
    l->last_ns = now_ns ? now_ns : 1;
    return 1;
}
