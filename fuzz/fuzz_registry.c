/* fuzz_registry.c - a request to kchat-registry's API (registry/registry.c) over the source
 * tree's schemas.
 *
 * The input is "<METHOD> <path>\n<body>"; the method is one of the API's or anything else.
 * The checks: every answer is JSON text in valid UTF-8 (the raw schema of .../schema too);
 * an error answer is an object with an integer error_code whose first three digits are the
 * HTTP status and a string message; a 200 to a read names only subjects, versions and ids of
 * schemas/registry.json, and a schema by id is that id's; nothing a request does changes a
 * later answer (the registry is read-only): GET /subjects/chat.events-value/versions/latest
 * answers the same after every input.
 */
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz.h"
#include "kchat/util.h"
#include "registry.h"

static reg_t R;
static char *latest; /* the answer that never changes */

static void ask(const char *method, const char *path, const char *body, size_t body_len,
                kc_http_resp_t *resp)
{
    kc_http_req_t req = {.method = method, .path = path, .body = body, .body_len = body_len,
                         .peer = "127.0.0.1"};
    *resp = (kc_http_resp_t){0};
    reg_handle(&R, &req, resp);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    if (reg_init(&R, KC_SCHEMAS_DIR, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    kc_http_resp_t r;
    ask("GET", "/subjects/chat.events-value/versions/latest", NULL, 0, &r);
    CHECK(r.status == 200);
    latest = kc_buf_steal(&r.body);
    return 0;
}

static int known_id(long long id, const char **text)
{
    kc_schema_info_t e;
    for (size_t i = 0; kc_schemas_entry(R.schemas, i, &e) == 0; i++)
        if (e.id == id) {
            *text = e.text;
            return 1;
        }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    const char *nl = memchr(data, '\n', size);
    size_t head = nl ? (size_t)(nl - (const char *)data) : size;
    const char *sp = memchr(data, ' ', head);
    if (!sp || memchr(data, '\0', head))
        return 0;
    char *method = strndup((const char *)data, (size_t)(sp - (const char *)data));
    char *path = strndup(sp + 1, head - (size_t)(sp + 1 - (const char *)data));
    const char *body = nl ? nl + 1 : NULL;
    size_t body_len = nl ? size - head - 1 : 0;
    char *body_copy = body ? strndup(body, body_len) : NULL; /* MHD's buffer ends in a NUL */

    kc_http_resp_t r;
    ask(method, path, body_copy, body_copy ? strlen(body_copy) : 0, &r);
    CHECK(r.status == 200 || r.status == 400 || r.status == 404 || r.status == 405 ||
          r.status == 422);
    CHECK(r.body.len > 0 && kc_utf8_valid(r.body.data, r.body.len));
    cJSON *j = NULL;
    CHECK(kc_json_parse_whole(r.body.data, r.body.len, &j) == KC_JSON_OK);
    if (r.status != 200) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "error_code");
        CHECK(cJSON_IsNumber(code) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "message")));
        int c = code->valueint;
        CHECK(c == r.status || c / 100 == r.status);
    } else if (cJSON_IsObject(j)) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(j, "schema");
        const char *text = NULL;
        if (id) /* an id answered is one of registry.json's, with its schema when given */
            CHECK(cJSON_IsNumber(id) && known_id((long long)id->valuedouble, &text) &&
                  (!schema || strcmp(schema->valuestring, text) == 0));
        long long n = 0;
        if (strcmp(method, "GET") == 0 && sscanf(path, "/schemas/ids/%lld", &n) == 1 && schema &&
            !id)
            CHECK(known_id(n, &text) && strcmp(schema->valuestring, text) == 0);
    }
    cJSON_Delete(j);
    kc_buf_free(&r.body);

    ask("GET", "/subjects/chat.events-value/versions/latest", NULL, 0, &r);
    CHECK(r.status == 200 && r.body.len == strlen(latest) &&
          memcmp(r.body.data, latest, r.body.len) == 0);
    kc_buf_free(&r.body);
    free(method);
    free(path);
    free(body_copy);
    return 0;
}
