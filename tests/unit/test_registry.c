/* kchat-registry's API (registry/registry.c) over the source tree's schemas, without a
 * server: every answer is checked against schemas/registry.json and the .avsc files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "registry.h"

static reg_t R;

static int setup(void **state)
{
    (void)state;
    char err[256] = "";
    if (reg_init(&R, KC_SCHEMAS_DIR, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    reg_destroy(&R);
    return 0;
}

/* Sends one request; returns the status and leaves the parsed body in *json (NULL when not
 * JSON) and the raw body in raw (when given). */
static int call(const char *method, const char *path, const char *body, cJSON **json,
                char *raw, size_t rawlen)
{
    kc_http_req_t req = {.method = method,
                         .path = path,
                         .body = body,
                         .body_len = body ? strlen(body) : 0,
                         .peer = "127.0.0.1"};
    kc_http_resp_t resp = {0};
    reg_handle(&R, &req, &resp);
    assert_string_equal(resp.content_type, REG_CONTENT_TYPE);
    if (json)
        *json = cJSON_ParseWithLength(resp.body.data ? resp.body.data : "", resp.body.len);
    if (raw)
        snprintf(raw, rawlen, "%.*s", (int)resp.body.len, resp.body.data ? resp.body.data : "");
    kc_buf_free(&resp.body);
    return resp.status;
}

static int error_code(cJSON *j)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "error_code");
    assert_true(cJSON_IsNumber(c));
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "message")));
    return c->valueint;
}

/* The registry.json entry of a subject's version: its id and its .avsc text. */
static int registry_entry(const char *subject, int version, char **text)
{
    FILE *f = fopen(KC_SCHEMAS_DIR "/registry.json", "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *reg = cJSON_Parse(buf);
    const cJSON *v;
    int id = -1;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(reg, "subjects"), subject))
    {
        if (cJSON_GetObjectItemCaseSensitive(v, "version")->valueint != version)
            continue;
        id = cJSON_GetObjectItemCaseSensitive(v, "id")->valueint;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", KC_SCHEMAS_DIR,
                 cJSON_GetObjectItemCaseSensitive(v, "file")->valuestring);
        FILE *s = fopen(path, "rb");
        assert_non_null(s);
        static char sbuf[1 << 16];
        size_t m = fread(sbuf, 1, sizeof(sbuf) - 1, s);
        fclose(s);
        sbuf[m] = '\0';
        *text = strdup(sbuf);
    }
    cJSON_Delete(reg);
    return id;
}

static void test_schema_by_id(void **state)
{
    (void)state;
    char *file = NULL;
    int id = registry_entry("chat.events-value", 1, &file);
    assert_true(id > 0);
    char path[64];
    snprintf(path, sizeof(path), "/schemas/ids/%d", id);
    cJSON *j = NULL;
    assert_int_equal(call("GET", path, NULL, &j, NULL, 0), 200);
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(j, "schema");
    assert_true(cJSON_IsString(schema));
    cJSON *got = cJSON_Parse(schema->valuestring), *want = cJSON_Parse(file);
    assert_true(cJSON_Compare(got, want, 1)); /* the file's schema, as JSON */
    cJSON_Delete(got);
    cJSON_Delete(j);
    /* where the id is used */
    snprintf(path, sizeof(path), "/schemas/ids/%d/versions", id);
    char raw[256];
    assert_int_equal(call("GET", path, NULL, NULL, raw, sizeof(raw)), 200);
    assert_string_equal(raw, "[{\"subject\":\"chat.events-value\",\"version\":1}]");
    snprintf(path, sizeof(path), "/schemas/ids/%d/subjects", id);
    assert_int_equal(call("GET", path, NULL, NULL, raw, sizeof(raw)), 200);
    assert_string_equal(raw, "[\"chat.events-value\"]");
    snprintf(path, sizeof(path), "/schemas/ids/%d/schema", id);
    assert_int_equal(call("GET", path, NULL, &j, NULL, 0), 200);
    assert_true(cJSON_Compare(j, want, 1));
    cJSON_Delete(j);
    cJSON_Delete(want);
    free(file);
    /* ids nobody holds, and ones that are not ids */
    const char *missing[] = {"/schemas/ids/999999", "/schemas/ids/0", "/schemas/ids/-1",
                             "/schemas/ids/abc", "/schemas/ids/99999999999"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(*missing); i++) {
        assert_int_equal(call("GET", missing[i], NULL, &j, NULL, 0), 404);
        assert_int_equal(error_code(j), 40403);
        cJSON_Delete(j);
    }
    assert_int_equal(call("GET", "/schemas/types", NULL, NULL, raw, sizeof(raw)), 200);
    assert_string_equal(raw, "[\"AVRO\"]");
}

static void test_subjects_and_versions(void **state)
{
    (void)state;
    cJSON *j = NULL;
    assert_int_equal(call("GET", "/subjects", NULL, &j, NULL, 0), 200);
    assert_true(cJSON_IsArray(j));
    int n = cJSON_GetArraySize(j);
    assert_true(n >= 4);
    for (int i = 1; i < n; i++) /* sorted, each once */
        assert_true(strcmp(cJSON_GetArrayItem(j, i - 1)->valuestring,
                           cJSON_GetArrayItem(j, i)->valuestring) < 0);
    cJSON_Delete(j);
    assert_int_equal(call("GET", "/subjects/chat.events-value/versions", NULL, &j, NULL, 0), 200);
    int versions = cJSON_GetArraySize(j);
    assert_true(versions >= 5);
    for (int i = 0; i < versions; i++)
        assert_int_equal(cJSON_GetArrayItem(j, i)->valueint, i + 1);
    cJSON_Delete(j);
    /* latest is the newest version, as -1 is */
    char *file = NULL;
    int id = registry_entry("chat.events-value", versions, &file);
    const char *latest[] = {"/subjects/chat.events-value/versions/latest",
                            "/subjects/chat.events-value/versions/-1"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(call("GET", latest[i], NULL, &j, NULL, 0), 200);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "subject")->valuestring,
                            "chat.events-value");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "version")->valueint, versions);
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "id")->valueint, id);
        cJSON_Delete(j);
    }
    free(file);
    char raw[512];
    assert_int_equal(
        call("GET", "/subjects/chat.events-value/versions/1/referencedby", NULL, NULL, raw,
             sizeof(raw)),
        200);
    assert_string_equal(raw, "[]");
    assert_int_equal(call("GET", "/subjects/chat.events-value/versions/999", NULL, &j, NULL, 0),
                     404);
    assert_int_equal(error_code(j), 40402);
    cJSON_Delete(j);
    assert_int_equal(call("GET", "/subjects/chat.events-value/versions/x1", NULL, &j, NULL, 0),
                     422);
    assert_int_equal(error_code(j), 42202);
    cJSON_Delete(j);
    assert_int_equal(call("GET", "/subjects/nope-value/versions", NULL, &j, NULL, 0), 404);
    assert_int_equal(error_code(j), 40401);
    cJSON_Delete(j);
    /* a hostile subject comes back escaped, as JSON */
    assert_int_equal(call("GET", "/subjects/\"}<x>/versions", NULL, &j, NULL, 0), 404);
    assert_non_null(strstr(cJSON_GetObjectItemCaseSensitive(j, "message")->valuestring, "\"}<x>"));
    cJSON_Delete(j);
    /* every schema at once: as many as the subjects' versions */
    assert_int_equal(call("GET", "/schemas", NULL, &j, NULL, 0), 200);
    assert_int_equal((size_t)cJSON_GetArraySize(j), kc_schemas_count(R.schemas));
    cJSON_Delete(j);
}

/* A lookup or registration body holding the file's schema as a string, re-printed with
 * another layout (what a client that parsed it sends). */
static char *body_of(const char *schema_text, const char *extra)
{
    cJSON *s = cJSON_Parse(schema_text);
    char *compact = cJSON_PrintUnformatted(s);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "schema", compact);
    if (extra)
        cJSON_AddStringToObject(b, "schemaType", extra);
    char *out = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    cJSON_Delete(s);
    free(compact);
    return out;
}

static void test_lookup_and_register(void **state)
{
    (void)state;
    char *file = NULL;
    int id = registry_entry("chat.commands-value", 2, &file);
    char *body = body_of(file, "AVRO");
    cJSON *j = NULL;
    assert_int_equal(call("POST", "/subjects/chat.commands-value", body, &j, NULL, 0), 200);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "id")->valueint, id);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "version")->valueint, 2);
    cJSON_Delete(j);
    /* registering what the subject holds answers its id */
    char raw[128];
    assert_int_equal(call("POST", "/subjects/chat.commands-value/versions", body, NULL, raw,
                          sizeof(raw)),
                     200);
    char want[64];
    snprintf(want, sizeof(want), "{\"id\":%d}", id);
    assert_string_equal(raw, want);
    /* the same schema under another subject is not found there */
    assert_int_equal(call("POST", "/subjects/chat.events-value", body, &j, NULL, 0), 404);
    assert_int_equal(error_code(j), 40403);
    cJSON_Delete(j);
    free(body);
    free(file);
    /* a new schema is refused: the registry is read-only */
    const char *other = "{\"schema\":\"{\\\"type\\\":\\\"record\\\",\\\"name\\\":\\\"X\\\","
                        "\\\"fields\\\":[]}\"}";
    assert_int_equal(call("POST", "/subjects/chat.commands-value/versions", other, &j, NULL, 0),
                     422);
    assert_int_equal(error_code(j), 42205);
    cJSON_Delete(j);
    assert_int_equal(call("POST", "/subjects/new-value/versions", other, &j, NULL, 0), 422);
    assert_int_equal(error_code(j), 42205);
    cJSON_Delete(j);
    assert_int_equal(call("POST", "/subjects/new-value", other, &j, NULL, 0), 404);
    assert_int_equal(error_code(j), 40401);
    cJSON_Delete(j);
    /* bodies that are not a schema */
    const char *bad[] = {"", "{", "[]", "{\"schema\":1}", "{\"schema\":\"{not json\"}",
                         "{\"schema\":\"{}\",\"schemaType\":\"PROTOBUF\"}",
                         "{\"schema\":\"{}\",\"references\":[{\"name\":\"a\"}]}",
                         "{\"schema\":\"{}\"} trailing"};
    const int codes[] = {400, 400, 400, 42201, 42201, 42201, 42201, 400};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(call("POST", "/subjects/chat.commands-value", bad[i], &j, NULL, 0),
                         codes[i] >= 1000 ? codes[i] / 100 : codes[i]);
        assert_int_equal(error_code(j), codes[i]);
        cJSON_Delete(j);
    }
}

static void test_config_mode_and_writes(void **state)
{
    (void)state;
    char raw[256];
    assert_int_equal(call("GET", "/config", NULL, NULL, raw, sizeof(raw)), 200);
    assert_string_equal(raw, "{\"compatibilityLevel\":\"BACKWARD\"}");
    assert_int_equal(call("GET", "/config/chat.events-value", NULL, NULL, raw, sizeof(raw)), 200);
    assert_string_equal(raw, "{\"compatibilityLevel\":\"BACKWARD\"}");
    assert_int_equal(call("PUT", "/config/chat.events-value", "{\"compatibility\":\"BACKWARD\"}",
                          NULL, raw, sizeof(raw)),
                     200);
    assert_string_equal(raw, "{\"compatibility\":\"BACKWARD\"}");
    cJSON *j = NULL;
    assert_int_equal(
        call("PUT", "/config/chat.events-value", "{\"compatibility\":\"NONE\"}", &j, NULL, 0), 422);
    assert_int_equal(error_code(j), 42205);
    cJSON_Delete(j);
    assert_int_equal(call("GET", "/config/nope", NULL, &j, NULL, 0), 404);
    assert_int_equal(error_code(j), 40401);
    cJSON_Delete(j);
    assert_int_equal(call("GET", "/mode", NULL, NULL, raw, sizeof(raw)), 200);
    assert_string_equal(raw, "{\"mode\":\"READONLY\"}");
    assert_int_equal(call("PUT", "/mode", "{\"mode\":\"READWRITE\"}", &j, NULL, 0), 422);
    assert_int_equal(error_code(j), 42205);
    cJSON_Delete(j);
    const char *deletes[] = {"/subjects/chat.events-value", "/subjects/chat.events-value/versions/1",
                             "/config/chat.events-value"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(call("DELETE", deletes[i], NULL, &j, NULL, 0), 422);
        assert_int_equal(error_code(j), 42205);
        cJSON_Delete(j);
    }
    /* paths the API does not have */
    const char *unknown[] = {"/nope", "/schemas/ids/1/what", "/a/b/c/d/e/f/g/h", "x",
                             "/subjects/chat.events-value/x"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(call("GET", unknown[i], NULL, &j, NULL, 0), 404);
        cJSON_Delete(j);
    }
    char longseg[400];
    memset(longseg, 'a', sizeof(longseg));
    memcpy(longseg, "/subjects/", 10);
    longseg[sizeof(longseg) - 1] = '\0';
    assert_int_equal(call("GET", longseg, NULL, &j, NULL, 0), 404);
    cJSON_Delete(j);
    assert_int_equal(call("PATCH", "/subjects", NULL, &j, NULL, 0), 405);
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_by_id),
        cmocka_unit_test(test_subjects_and_versions),
        cmocka_unit_test(test_lookup_and_register),
        cmocka_unit_test(test_config_mode_and_writes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
