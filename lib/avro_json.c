/* avro_json.c - Avro JSON encoding into avro-c values, for tools and tests. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/avro.h"
#include "kchat/util.h"

static int fail(char *errstr, size_t size, const char *path, const char *what)
{
    kc_strlcpyf(errstr, size, "%s: %s", path[0] ? path : "(top)", what);
    return -EINVAL;
}

static int fill(avro_value_t *v, const cJSON *j, const char *path, char *errstr, size_t size);

static int fill_union(avro_value_t *v, const cJSON *j, const char *path, char *errstr, size_t size)
{
    avro_schema_t us = avro_value_get_schema(v);
    avro_value_t branch;
    int idx = -1;
    if (cJSON_IsNull(j)) {
        if (!avro_schema_union_branch_by_name(us, &idx, "null"))
            return fail(errstr, size, path, "null is not a branch of this union");
        return avro_value_set_branch(v, idx, &branch) || avro_value_set_null(&branch)
                   ? fail(errstr, size, path, "cannot set null")
                   : 0;
    }
    if (!cJSON_IsObject(j) || cJSON_GetArraySize(j) != 1)
        return fail(errstr, size, path, "a union value is null or {\"type\": value}");
    const char *name = j->child->string;
    /* avro-c names record branches by their short name. */
    const char *dot = strrchr(name, '.');
    const char *shortname = dot ? dot + 1 : name;
    if (!avro_schema_union_branch_by_name(us, &idx, shortname) || idx < 0)
        return fail(errstr, size, path, "no such branch in the union");
    if (avro_value_set_branch(v, idx, &branch) != 0)
        return fail(errstr, size, path, "cannot select the branch");
    return fill(&branch, j->child, path, errstr, size);
}

static int fill(avro_value_t *v, const cJSON *j, const char *path, char *errstr, size_t size)
{
    char sub[512];
    switch (avro_value_get_type(v)) {
    case AVRO_NULL:
        return cJSON_IsNull(j) && avro_value_set_null(v) == 0 ? 0 : fail(errstr, size, path, "expected null");
    case AVRO_BOOLEAN:
        return cJSON_IsBool(j) && avro_value_set_boolean(v, cJSON_IsTrue(j)) == 0
                   ? 0
                   : fail(errstr, size, path, "expected a boolean");
    case AVRO_INT32:
    case AVRO_INT64: {
        if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble))
            return fail(errstr, size, path, "expected an integer");
        /* cJSON holds numbers as doubles: past 2^53 the text may not be the value. */
        if (fabs(j->valuedouble) >= 9007199254740992.0)
            return fail(errstr, size, path, "integer too large to read exactly from JSON");
        int rc = avro_value_get_type(v) == AVRO_INT32
                     ? avro_value_set_int(v, (int32_t)j->valuedouble)
                     : avro_value_set_long(v, (int64_t)j->valuedouble);
        return rc == 0 ? 0 : fail(errstr, size, path, "cannot set the integer");
    }
    case AVRO_FLOAT:
    case AVRO_DOUBLE: {
        if (!cJSON_IsNumber(j))
            return fail(errstr, size, path, "expected a number");
        int rc = avro_value_get_type(v) == AVRO_FLOAT ? avro_value_set_float(v, (float)j->valuedouble)
                                                      : avro_value_set_double(v, j->valuedouble);
        return rc == 0 ? 0 : fail(errstr, size, path, "cannot set the number");
    }
    case AVRO_STRING:
        return cJSON_IsString(j) && avro_value_set_string(v, j->valuestring) == 0
                   ? 0
                   : fail(errstr, size, path, "expected a string");
    case AVRO_BYTES:
    case AVRO_FIXED: {
        if (!cJSON_IsString(j))
            return fail(errstr, size, path, "expected a string of bytes");
        /* Each code point 0-255 (UTF-8 in the parsed JSON) is one byte. cJSON strings end at
         * the first NUL, so bytes holding \u0000 cannot come through this path. */
        const unsigned char *s = (const unsigned char *)j->valuestring;
        size_t n = strlen(j->valuestring), o = 0;
        unsigned char *out = kc_xmalloc(n + 1);
        for (size_t i = 0; i < n; i++) {
            if (s[i] < 0x80) {
                out[o++] = s[i];
            } else if ((s[i] == 0xc2 || s[i] == 0xc3) && i + 1 < n && (s[i + 1] & 0xc0) == 0x80) {
                out[o++] = (unsigned char)(((s[i] & 0x03) << 6) | (s[i + 1] & 0x3f));
                i++;
            } else {
                free(out);
                return fail(errstr, size, path, "bytes must be code points 0-255");
            }
        }
        int rc;
        if (avro_value_get_type(v) == AVRO_FIXED) {
            int64_t want = avro_schema_fixed_size(avro_value_get_schema(v));
            if (want < 0 || (size_t)want != o) {
                free(out);
                return fail(errstr, size, path, "fixed of the wrong size");
            }
            rc = avro_value_set_fixed(v, out, o);
        } else {
            rc = avro_value_set_bytes(v, out, o);
        }
        free(out);
        return rc == 0 ? 0 : fail(errstr, size, path, "cannot set bytes");
    }
    case AVRO_ARRAY: {
        if (!cJSON_IsArray(j))
            return fail(errstr, size, path, "expected an array");
        int i = 0;
        const cJSON *el;
        cJSON_ArrayForEach(el, j)
        {
            avro_value_t item;
            if (avro_value_append(v, &item, NULL) != 0)
                return fail(errstr, size, path, "cannot append");
            kc_strlcpyf(sub, sizeof(sub), "%s[%d]", path, i++);
            int rc = fill(&item, el, sub, errstr, size);
            if (rc)
                return rc;
        }
        return 0;
    }
    case AVRO_RECORD: {
        if (!cJSON_IsObject(j))
            return fail(errstr, size, path, "expected an object");
        size_t n = 0;
        if (avro_value_get_size(v, &n) != 0)
            return fail(errstr, size, path, "bad record");
        for (size_t i = 0; i < n; i++) {
            avro_value_t f;
            const char *fname = NULL;
            if (avro_value_get_by_index(v, i, &f, &fname) != 0)
                return fail(errstr, size, path, "bad record field");
            const cJSON *fj = cJSON_GetObjectItemCaseSensitive(j, fname);
            kc_strlcpyf(sub, sizeof(sub), "%s.%s", path, fname);
            if (!fj)
                return fail(errstr, size, sub, "missing");
            int rc = fill(&f, fj, sub, errstr, size);
            if (rc)
                return rc;
        }
        return 0;
    }
    case AVRO_UNION:
        return fill_union(v, j, path, errstr, size);
    case AVRO_ENUM: {
        int idx = cJSON_IsString(j) ? avro_schema_enum_get_by_name(avro_value_get_schema(v),
                                                                   j->valuestring)
                                    : -1;
        if (idx < 0)
            return fail(errstr, size, path, "expected a symbol of the enum");
        return avro_value_set_enum(v, idx) == 0 ? 0 : fail(errstr, size, path, "cannot set");
    }
    default:
        return fail(errstr, size, path, "type not supported here (map)");
    }
}

int kc_avro_from_json(avro_value_t *v, const cJSON *json, char *errstr, size_t errstr_size)
{
    return fill(v, json, "", errstr, errstr_size);
}
