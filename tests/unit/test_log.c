/* test_log.c - the JSON line format (kc_log_format), level parsing, and the routing of
 * libwebsockets' and librdkafka's logs into our lines on fd 2. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kchat/kafka.h"
#include "kchat/log.h"

/* ---- helpers ---- */

/* Formats one line and checks the framing: 1..KC_LOG_LINE_MAX bytes, a single '\n' at the
 * end, a JSON object. Returns the parsed object. */
static cJSON *format_line(kc_log_level_t level, const kc_log_field_t *fields, size_t nfields,
                          const char *msg, size_t *len_out)
{
    char line[KC_LOG_LINE_MAX];
    size_t n = kc_log_format(line, level, fields, nfields, msg);
    assert_true(n > 0);
    assert_true(n <= KC_LOG_LINE_MAX);
    assert_int_equal(line[n - 1], '\n');
    assert_null(memchr(line, '\n', n - 1));
    cJSON *j = cJSON_ParseWithLength(line, n - 1);
    if (!j)
        fail_msg("not JSON: %.*s", (int)(n > 300 ? 300 : n), line);
    assert_true(cJSON_IsObject(j));
    if (len_out)
        *len_out = n;
    return j;
}

static const char *get_str(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v))
        fail_msg("\"%s\" is missing or not a string", key);
    return v->valuestring;
}

static double get_num(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v))
        fail_msg("\"%s\" is missing or not a number", key);
    return v->valuedouble;
}

static int digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* fd 2 redirected into an unlinked temporary file. Assertions must not run while it is
 * active (cmocka reports on stderr), so callers end the capture first. */
typedef struct {
    int fd;
    int saved;
} capture_t;

static void capture_begin(capture_t *c)
{
    char path[] = "/tmp/kchat-test-log-XXXXXX";
    c->fd = mkstemp(path);
    assert_true(c->fd >= 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(fflush(stderr), 0);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(c->fd, 2), 2);
}

/* What has been written so far (caller frees). */
static char *capture_peek(const capture_t *c)
{
    struct stat st;
    if (fstat(c->fd, &st) != 0)
        return NULL;
    size_t size = (size_t)st.st_size;
    char *text = malloc(size + 1);
    if (!text)
        return NULL;
    ssize_t r = pread(c->fd, text, size, 0);
    text[r > 0 ? r : 0] = '\0';
    return text;
}

static char *capture_end(capture_t *c)
{
    int restored = dup2(c->saved, 2);
    close(c->saved);
    char *text = capture_peek(c);
    close(c->fd);
    assert_int_equal(restored, 2);
    assert_non_null(text);
    return text;
}

/* Checks that every captured line is a JSON object and counts those whose "lib" and
 * "level" match (either may be NULL for any) and whose msg contains msg_part (or NULL). */
static int count_lines(const char *text, const char *lib, const char *level, const char *msg_part)
{
    int count = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (!nl)
            fail_msg("captured output does not end with a newline: %s", p);
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        if (!j || !cJSON_IsObject(j))
            fail_msg("captured line is not a JSON object: %.*s", (int)(nl - p), p);
        const cJSON *jl = cJSON_GetObjectItemCaseSensitive(j, "lib");
        const cJSON *jv = cJSON_GetObjectItemCaseSensitive(j, "level");
        const cJSON *jm = cJSON_GetObjectItemCaseSensitive(j, "msg");
        if ((!lib || (cJSON_IsString(jl) && strcmp(jl->valuestring, lib) == 0)) &&
            (!level || (cJSON_IsString(jv) && strcmp(jv->valuestring, level) == 0)) &&
            (!msg_part || (cJSON_IsString(jm) && strstr(jm->valuestring, msg_part))))
            count++;
        cJSON_Delete(j);
        p = nl + 1;
    }
    return count;
}

static int setup(void **state)
{
    (void)state;
    kc_log_init("testsvc", KC_LOG_DEBUG);
    return 0;
}

/* ---- kc_log_format ---- */

static void test_format_fields(void **state)
{
    (void)state;
    size_t n;
    cJSON *j = format_line(KC_LOG_WARN,
                           KC_FIELDS(KC_STR("topic", "chat.events"), KC_INT("partition", 3),
                                     KC_INT("offset", -9000000000LL)),
                           "assigned", &n);
    assert_string_equal(get_str(j, "level"), "warn");
    assert_string_equal(get_str(j, "svc"), "testsvc");
    assert_string_equal(get_str(j, "msg"), "assigned");
    assert_string_equal(get_str(j, "topic"), "chat.events");
    assert_true(get_num(j, "partition") == 3);
    assert_true(get_num(j, "offset") == -9000000000.0);
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "truncated"));
    /* the first keys come in the documented order */
    char line[KC_LOG_LINE_MAX];
    kc_log_format(line, KC_LOG_INFO, NULL, 0, "x");
    assert_memory_equal(line, "{\"ts\":\"", 7);
    cJSON_Delete(j);
}

static void test_format_no_fields(void **state)
{
    (void)state;
    cJSON *j = format_line(KC_LOG_INFO, NULL, 0, "", NULL);
    assert_string_equal(get_str(j, "msg"), "");
    assert_int_equal(cJSON_GetArraySize(j), 4); /* ts, level, svc, msg */
    cJSON_Delete(j);
}

static void test_format_ts_is_utc_iso8601_ms(void **state)
{
    (void)state;
    /* A local zone far from UTC (a POSIX TZ string needs no tzdata): a ts in local time
     * would be off by 5h45. */
    const char *old_tz = getenv("TZ");
    char *saved = old_tz ? strdup(old_tz) : NULL;
    assert_int_equal(setenv("TZ", "XYZ-05:45", 1), 0);
    tzset();
    time_t before = time(NULL);
    cJSON *j = format_line(KC_LOG_INFO, NULL, 0, "tick", NULL);
    time_t after = time(NULL);
    if (saved) {
        assert_int_equal(setenv("TZ", saved, 1), 0);
        free(saved);
    } else {
        assert_int_equal(unsetenv("TZ"), 0);
    }
    tzset();

    const char *ts = get_str(j, "ts");
    /* YYYY-MM-DDTHH:MM:SS.mmmZ */
    assert_int_equal(strlen(ts), 24);
    assert_true(digits(ts, 4) && ts[4] == '-' && digits(ts + 5, 2) && ts[7] == '-' &&
                digits(ts + 8, 2) && ts[10] == 'T' && digits(ts + 11, 2) && ts[13] == ':' &&
                digits(ts + 14, 2) && ts[16] == ':' && digits(ts + 17, 2) && ts[19] == '.' &&
                digits(ts + 20, 3) && ts[23] == 'Z');
    struct tm tm = {0};
    assert_non_null(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t t = timegm(&tm);
    assert_true(t >= before - 1 && t <= after + 1);
    cJSON_Delete(j);
}

static void test_format_levels(void **state)
{
    (void)state;
    static const struct {
        kc_log_level_t level;
        const char *name;
    } cases[] = {{KC_LOG_DEBUG, "debug"},
                 {KC_LOG_INFO, "info"},
                 {KC_LOG_WARN, "warn"},
                 {KC_LOG_ERROR, "error"}};
    for (size_t i = 0; i < 4; i++) {
        cJSON *j = format_line(cases[i].level, NULL, 0, "m", NULL);
        assert_string_equal(get_str(j, "level"), cases[i].name);
        assert_string_equal(kc_log_level_name(cases[i].level), cases[i].name);
        cJSON_Delete(j);
    }
}

static void test_format_svc_from_init(void **state)
{
    (void)state;
    kc_log_init("proc\"essor\n", KC_LOG_DEBUG);
    cJSON *j = format_line(KC_LOG_INFO, NULL, 0, "m", NULL);
    assert_string_equal(get_str(j, "svc"), "proc\"essor\n");
    cJSON_Delete(j);
    kc_log_init("testsvc", KC_LOG_DEBUG);
}

static void test_format_hostile_strings(void **state)
{
    (void)state;
    const char *msg = "say \"hi\" \\ back\nslash\r\t\x01\x1f\x7f end";
    const char *val = "\"},\"level\":\"forged\",\"x\":\"";
    cJSON *j = format_line(KC_LOG_ERROR,
                           KC_FIELDS(KC_STR("value", val), KC_STR("we\"ird\nkey", "v"),
                                     KC_STR("bytes", "ok \xff\xc0\x80\xed\xa0\x80 \xc3\xa9")),
                           msg, NULL);
    assert_string_equal(get_str(j, "msg"), msg);
    assert_string_equal(get_str(j, "value"), val);
    assert_string_equal(get_str(j, "level"), "error"); /* not forged */
    assert_string_equal(get_str(j, "we\"ird\nkey"), "v");
    /* invalid bytes became U+FFFD, the valid é stayed */
    const char *bytes = get_str(j, "bytes");
    assert_memory_equal(bytes, "ok \xef\xbf\xbd", 6);
    assert_non_null(strstr(bytes, " \xc3\xa9"));
    assert_null(strchr(bytes, '\xff'));
    cJSON_Delete(j);
}

static void test_format_long_line_fits(void **state)
{
    (void)state;
    /* 3000 bytes of message fit in one line: kept whole, not marked */
    char *msg = malloc(3001);
    assert_non_null(msg);
    memset(msg, 'm', 3000);
    msg[3000] = '\0';
    cJSON *j = format_line(KC_LOG_INFO, NULL, 0, msg, NULL);
    assert_string_equal(get_str(j, "msg"), msg);
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "truncated"));
    cJSON_Delete(j);
    free(msg);
}

static void test_format_100k_message_truncated(void **state)
{
    (void)state;
    size_t big = 100 * 1024;
    char *msg = malloc(big + 1);
    assert_non_null(msg);
    memset(msg, 'x', big);
    msg[big] = '\0';
    size_t n;
    cJSON *j =
        format_line(KC_LOG_WARN, KC_FIELDS(KC_STR("topic", "t"), KC_INT("partition", 1)), msg, &n);
    assert_true(n <= KC_LOG_LINE_MAX);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "truncated")));
    const char *m = get_str(j, "msg");
    assert_true(strlen(m) > 0 && strlen(m) < big);
    assert_memory_equal(m, msg, strlen(m)); /* a prefix of the message */
    assert_string_equal(get_str(j, "level"), "warn");
    assert_string_equal(get_str(j, "svc"), "testsvc");
    assert_string_equal(get_str(j, "topic"), "t");
    assert_true(get_num(j, "partition") == 1);
    cJSON_Delete(j);
    free(msg);
}

/* The worst case for the cut: every byte escapes to six, in the message and in many
 * long fields. The line must still fit and be valid JSON. */
static void test_format_truncated_escapes_still_json(void **state)
{
    (void)state;
    size_t big = 100 * 1024;
    char *msg = malloc(big + 1), *fv = malloc(2001);
    assert_non_null(msg);
    assert_non_null(fv);
    memset(msg, '\x01', big);
    msg[big] = '\0';
    memset(fv, '\x02', 2000);
    fv[2000] = '\0';
    size_t n;
    cJSON *j = format_line(KC_LOG_ERROR,
                           KC_FIELDS(KC_STR("a", fv), KC_STR("b", fv), KC_STR("c", fv),
                                     KC_STR("d", fv), KC_STR("e", fv), KC_STR("f", fv),
                                     KC_STR("g", fv), KC_STR("h", fv), KC_INT("partition", 5)),
                           msg, &n);
    assert_true(n <= KC_LOG_LINE_MAX);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "truncated")));
    assert_string_equal(get_str(j, "level"), "error");
    assert_true(get_num(j, "partition") == 5);
    cJSON_Delete(j);
    free(fv);
    free(msg);
}

/* ---- levels ---- */

static void test_level_parse(void **state)
{
    (void)state;
    kc_log_level_t l = KC_LOG_ERROR;
    assert_int_equal(kc_log_level_parse("debug", &l), 0);
    assert_int_equal(l, KC_LOG_DEBUG);
    assert_int_equal(kc_log_level_parse("info", &l), 0);
    assert_int_equal(l, KC_LOG_INFO);
    assert_int_equal(kc_log_level_parse("warn", &l), 0);
    assert_int_equal(l, KC_LOG_WARN);
    assert_int_equal(kc_log_level_parse("error", &l), 0);
    assert_int_equal(l, KC_LOG_ERROR);
    l = KC_LOG_DEBUG;
    assert_int_equal(kc_log_level_parse("verbose", &l), -EINVAL);
    assert_int_equal(kc_log_level_parse("", &l), -EINVAL);
    assert_int_equal(kc_log_level_parse("info ", &l), -EINVAL);
    assert_int_equal(l, KC_LOG_DEBUG); /* untouched on error */
}

static void test_level_threshold(void **state)
{
    (void)state;
    kc_log_set_level(KC_LOG_WARN);
    assert_false(kc_log_enabled(KC_LOG_DEBUG));
    assert_false(kc_log_enabled(KC_LOG_INFO));
    assert_true(kc_log_enabled(KC_LOG_WARN));
    assert_true(kc_log_enabled(KC_LOG_ERROR));

    capture_t c;
    capture_begin(&c);
    kc_log_info("dropped line");
    kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_STR("user_id", "u1"), KC_INT("seq_no", 42)),
              "kept line %d", 7);
    char *text = capture_end(&c);
    kc_log_set_level(KC_LOG_DEBUG);

    assert_int_equal(count_lines(text, NULL, NULL, NULL), 1);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    assert_string_equal(get_str(j, "msg"), "kept line 7");
    assert_string_equal(get_str(j, "level"), "error");
    assert_string_equal(get_str(j, "user_id"), "u1");
    assert_true(get_num(j, "seq_no") == 42);
    cJSON_Delete(j);
    free(text);
}

/* kc_log_kv with messages longer than it used to format (2 KB): the line carries the
 * whole message when it fits, else a cut one marked truncated, never a silently shortened
 * one. */
static void test_log_kv_long_message(void **state)
{
    (void)state;
    static const size_t sizes[] = {3000, 5000, 100 * 1024};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t len = sizes[s];
        char *msg = malloc(len + 1);
        assert_non_null(msg);
        memset(msg, 'k', len);
        msg[len] = '\0';
        capture_t c;
        capture_begin(&c);
        kc_log_info("%s", msg);
        char *text = capture_end(&c);
        assert_int_equal(count_lines(text, NULL, "info", NULL), 1);
        assert_true(strlen(text) <= KC_LOG_LINE_MAX);
        cJSON *j = cJSON_Parse(text);
        assert_non_null(j);
        const char *m = get_str(j, "msg");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "truncated");
        if (len == 3000) {
            assert_string_equal(m, msg);
            assert_null(t);
        } else {
            assert_true(cJSON_IsTrue(t));
            assert_true(strlen(m) < len);
            assert_memory_equal(m, msg, strlen(m));
        }
        cJSON_Delete(j);
        free(text);
        free(msg);
    }
}

/* ---- routing ---- */

static void test_route_lws(void **state)
{
    (void)state;
    capture_t c;
    capture_begin(&c);
    kc_log_route_lws();
    lwsl_err("hello %d\n", 1);
    lwsl_warn("careful %s\n", "there");
    kc_log_lws_emit(LLL_NOTICE, "notice line\r\n");
    char *text = capture_end(&c);

    assert_int_equal(count_lines(text, "libwebsockets", "error", "hello 1"), 1);
    assert_int_equal(count_lines(text, "libwebsockets", "warn", "careful there"), 1);
    assert_int_equal(count_lines(text, "libwebsockets", "info", "notice line"), 1);
    /* the emitter strips lws' trailing newline from the message */
    assert_int_equal(count_lines(text, NULL, NULL, "\n"), 0);
    free(text);
}

static void test_route_librdkafka(void **state)
{
    (void)state;
    char err[512];
    const char *overrides[] = {"test.mock.num.brokers", "1", "debug", "broker", NULL};
    kc_kafka_opts_t o = {.conn = &(kc_kafka_cfg_t){.brokers = (char *)"127.0.0.1:1"}, .client_id = "logtest"};

    capture_t c;
    capture_begin(&c);
    rd_kafka_t *rk = kc_kafka_producer_new(&o, overrides, err, sizeof(err));
    int seen = 0;
    /* librdkafka logs on its own threads; the lines reach us through the main queue. At
     * most ~10 s, normally a few iterations. */
    for (int i = 0; rk && !seen && i < 1000; i++) {
        kc_kafka_serve(rk, 1000);
        char *text = capture_peek(&c);
        seen = text && strstr(text, "\"lib\":\"librdkafka\"") != NULL;
        free(text);
        if (!seen)
            usleep(10 * 1000);
    }
    kc_kafka_destroy(rk);
    char *text = capture_end(&c);

    if (!rk)
        fail_msg("kc_kafka_producer_new: %s", err);
    assert_true(seen);
    assert_true(count_lines(text, "librdkafka", NULL, NULL) >= 1);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_fields),
        cmocka_unit_test(test_format_no_fields),
        cmocka_unit_test(test_format_ts_is_utc_iso8601_ms),
        cmocka_unit_test(test_format_levels),
        cmocka_unit_test(test_format_svc_from_init),
        cmocka_unit_test(test_format_hostile_strings),
        cmocka_unit_test(test_format_long_line_fits),
        cmocka_unit_test(test_format_100k_message_truncated),
        cmocka_unit_test(test_format_truncated_escapes_still_json),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_level_threshold),
        cmocka_unit_test(test_log_kv_long_message),
        cmocka_unit_test(test_route_lws),
        cmocka_unit_test(test_route_librdkafka),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
