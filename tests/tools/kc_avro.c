/* kc-avro - lib/'s Avro codec from the command line, for the wire-format tests.
 *
 *   kc-avro encode SUBJECT < value.json > record.bin   Avro JSON encoding in, framed record out
 *   kc-avro decode < record.bin                         framed record in, one JSON line out:
 *                                                       {"schema_id", "subject", "value"}
 * Options: --schemas-dir=DIR (default schemas). Errors go to stderr with exit status 1.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/avro.h"
#include "kchat/util.h"

#define MAX_INPUT (4 * 1024 * 1024)

static char *read_all(FILE *f, size_t *len)
{
    char *buf = kc_xmalloc(MAX_INPUT + 1);
    size_t n = fread(buf, 1, MAX_INPUT + 1, f);
    if (ferror(f) || n > MAX_INPUT) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int encode(kc_schemas_t *s, const char *subject)
{
    size_t len;
    char *text = read_all(stdin, &len);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    if (!j) {
        fprintf(stderr, "kc-avro: input is not JSON\n");
        return 1;
    }
    avro_value_t v;
    char err[512];
    kc_buf_t out = {0};
    int rc = 1;
    if (kc_avro_value_new(s, subject, &v) != 0) {
        fprintf(stderr, "kc-avro: unknown subject %s\n", subject);
        cJSON_Delete(j);
        return 1;
    }
    if (kc_avro_from_json(&v, j, err, sizeof(err)) != 0)
        fprintf(stderr, "kc-avro: %s\n", err);
    else if (kc_avro_encode(s, subject, &v, &out) != 0)
        fprintf(stderr, "kc-avro: cannot encode\n");
    else if (fwrite(out.data, 1, out.len, stdout) == out.len)
        rc = 0;
    kc_buf_free(&out);
    avro_value_decref(&v);
    cJSON_Delete(j);
    return rc;
}

static int decode(kc_schemas_t *s)
{
    size_t len;
    char *bin = read_all(stdin, &len);
    if (!bin)
        return 1;
    kc_avro_msg_t m;
    char err[512];
    int rc = kc_avro_decode(s, bin, len, &m, err, sizeof(err));
    free(bin);
    if (rc != 0) {
        fprintf(stderr, "kc-avro: %s\n", err);
        return 1;
    }
    char *json = NULL;
    if (avro_value_to_json(&m.value, 1, &json) != 0) {
        kc_avro_msg_free(&m);
        return 1;
    }
    printf("{\"schema_id\":%d,\"subject\":\"%s\",\"value\":%s}\n", (int)m.schema_id, m.subject,
           json);
    free(json);
    kc_avro_msg_free(&m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = "schemas";
    int a = 1;
    if (a < argc && strncmp(argv[a], "--schemas-dir=", 14) == 0)
        dir = argv[a++] + 14;
    if (a >= argc || (strcmp(argv[a], "encode") == 0 && a + 1 >= argc)) {
        fprintf(stderr, "usage: kc-avro [--schemas-dir=DIR] encode SUBJECT | decode\n");
        return 2;
    }
    char err[512];
    kc_schemas_t *s = kc_schemas_load(dir, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "kc-avro: %s\n", err);
        return 1;
    }
    int rc = strcmp(argv[a], "encode") == 0 ? encode(s, argv[a + 1])
             : strcmp(argv[a], "decode") == 0 ? decode(s)
                                              : 2;
    kc_schemas_destroy(s);
    return rc;
}
