/* avro.c - schema registry file, Confluent framing, field access with defaults. */
#include "kchat/avro.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

#define REGISTRY_MAX_BYTES (1 << 20)
#define SCHEMA_MAX_BYTES (1 << 20)

typedef struct {
    int32_t id;
    int version;
    char *subject;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    cJSON *json; /* kept until the defaults are collected */
    char *text;  /* the schema as compact JSON, for a registry server */
} entry_t;

typedef struct {
    char *key; /* "<record full name>#<field>" */
    cJSON *value;
} default_t;

struct kc_schemas {
    entry_t *entries;
    size_t n;
    default_t *defaults;
    size_t ndefaults;
};

static char *slurp(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = kc_xmalloc(max + 1);
    size_t n = fread(buf, 1, max + 1, f);
    int bad = ferror(f) || n > max;
    if (fclose(f) != 0 || bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Records the defaults of every record field in a schema's JSON, for readers of older data. */
static void collect_defaults(kc_schemas_t *s, const cJSON *node, const char *ns)
{
    if (cJSON_IsArray(node)) {
        const cJSON *c;
        cJSON_ArrayForEach(c, node)
        {
            collect_defaults(s, c, ns);
        }
        return;
    }
    if (!cJSON_IsObject(node))
        return;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "type");
    const cJSON *nsj = cJSON_GetObjectItemCaseSensitive(node, "namespace");
    if (cJSON_IsString(nsj))
        ns = nsj->valuestring;
    if (cJSON_IsString(type) && strcmp(type->valuestring, "record") == 0) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(node, "name");
        const cJSON *fields = cJSON_GetObjectItemCaseSensitive(node, "fields");
        const cJSON *f;
        cJSON_ArrayForEach(f, fields)
        {
            const cJSON *fname = cJSON_GetObjectItemCaseSensitive(f, "name");
            const cJSON *def = cJSON_GetObjectItemCaseSensitive(f, "default");
            if (def && cJSON_IsString(name) && cJSON_IsString(fname)) {
                kc_buf_t key = {0};
                kc_buf_printf(&key, "%s%s%s#%s", ns ? ns : "", ns ? "." : "", name->valuestring,
                              fname->valuestring);
                s->defaults = kc_xrealloc(s->defaults, (s->ndefaults + 1) * sizeof(default_t));
                s->defaults[s->ndefaults++] =
                    (default_t){kc_buf_steal(&key), cJSON_Duplicate(def, 1)};
            }
            collect_defaults(s, cJSON_GetObjectItemCaseSensitive(f, "type"), ns);
        }
        return;
    }
    if (cJSON_IsObject(type) || cJSON_IsArray(type))
        collect_defaults(s, type, ns);
    collect_defaults(s, cJSON_GetObjectItemCaseSensitive(node, "items"), ns);
    collect_defaults(s, cJSON_GetObjectItemCaseSensitive(node, "values"), ns);
}

static const entry_t *newest(const kc_schemas_t *s, const char *subject)
{
    const entry_t *best = NULL;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->entries[i].subject, subject) == 0 &&
            (!best || s->entries[i].version > best->version))
            best = &s->entries[i];
    return best;
}

static const entry_t *by_id(const kc_schemas_t *s, int32_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->entries[i].id == id)
            return &s->entries[i];
    return NULL;
}

static int load_entry(kc_schemas_t *s, const char *dir, const char *subject, const cJSON *v,
                      char *errstr, size_t errstr_size)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, "id");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(v, "version");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(v, "file");
    if (!cJSON_IsNumber(id) || id->valueint < 1 || !cJSON_IsNumber(version) ||
        !cJSON_IsString(file) || strchr(file->valuestring, '/')) {
        kc_strlcpyf(errstr, errstr_size, "registry: subject %s has an entry without id, version "
                                         "or a plain file name",
                    subject);
        return -EINVAL;
    }
    if (by_id(s, id->valueint)) {
        kc_strlcpyf(errstr, errstr_size, "registry: schema id %d is used twice", id->valueint);
        return -EINVAL;
    }
    char path[4096];
    size_t len = 0;
    if (kc_strlcpyf(path, sizeof(path), "%s/%s", dir, file->valuestring) != 0)
        return -ENAMETOOLONG;
    char *text = slurp(path, SCHEMA_MAX_BYTES, &len);
    if (!text) {
        kc_strlcpyf(errstr, errstr_size, "cannot read schema %s", path);
        return -ENOENT;
    }
    avro_schema_t schema = NULL;
    cJSON *json = cJSON_ParseWithLength(text, len);
    int rc = json ? avro_schema_from_json_length(text, len, &schema) : EINVAL;
    free(text);
    if (rc != 0) {
        kc_strlcpyf(errstr, errstr_size, "schema %s: %s", path, json ? avro_strerror() : "bad JSON");
        cJSON_Delete(json);
        return -EINVAL;
    }
    s->entries = kc_xrealloc(s->entries, (s->n + 1) * sizeof(entry_t));
    s->entries[s->n++] = (entry_t){.id = id->valueint,
                                   .version = version->valueint,
                                   .subject = kc_xstrdup(subject),
                                   .schema = schema,
                                   .iface = avro_generic_class_from_schema(schema),
                                   .json = json,
                                   .text = cJSON_PrintUnformatted(json)};
    if (!s->entries[s->n - 1].text) {
        kc_strlcpyf(errstr, errstr_size, "schema %s: out of memory", path);
        return -ENOMEM;
    }
    return 0;
}

kc_schemas_t *kc_schemas_load(const char *dir, char *errstr, size_t errstr_size)
{
    char path[4096];
    size_t len = 0;
    if (kc_strlcpyf(path, sizeof(path), "%s/registry.json", dir) != 0)
        return NULL;
    char *text = slurp(path, REGISTRY_MAX_BYTES, &len);
    if (!text) {
        kc_strlcpyf(errstr, errstr_size, "cannot read %s", path);
        return NULL;
    }
    cJSON *reg = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *subjects = reg ? cJSON_GetObjectItemCaseSensitive(reg, "subjects") : NULL;
    if (!cJSON_IsObject(subjects)) {
        kc_strlcpyf(errstr, errstr_size, "%s: expected an object with \"subjects\"", path);
        cJSON_Delete(reg);
        return NULL;
    }
    kc_schemas_t *s = kc_xcalloc(1, sizeof(*s));
    const cJSON *subj;
    cJSON_ArrayForEach(subj, subjects)
    {
        const cJSON *v;
        cJSON_ArrayForEach(v, subj)
        {
            if (load_entry(s, dir, subj->string, v, errstr, errstr_size) != 0) {
                cJSON_Delete(reg);
                kc_schemas_destroy(s);
                return NULL;
            }
        }
    }
    cJSON_Delete(reg);
    /* Defaults come from the newest version of each subject; avro-c does not keep them. */
    for (size_t i = 0; i < s->n; i++) {
        if (newest(s, s->entries[i].subject) == &s->entries[i])
            collect_defaults(s, s->entries[i].json, NULL);
        cJSON_Delete(s->entries[i].json);
        s->entries[i].json = NULL;
    }
    return s;
}

void kc_schemas_destroy(kc_schemas_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->entries[i].subject);
        free(s->entries[i].text);
        if (s->entries[i].iface)
            avro_value_iface_decref(s->entries[i].iface);
        avro_schema_decref(s->entries[i].schema);
        cJSON_Delete(s->entries[i].json);
    }
    for (size_t i = 0; i < s->ndefaults; i++) {
        free(s->defaults[i].key);
        cJSON_Delete(s->defaults[i].value);
    }
    free(s->entries);
    free(s->defaults);
    free(s);
}

int32_t kc_schemas_current_id(const kc_schemas_t *s, const char *subject)
{
    const entry_t *e = newest(s, subject);
    return e ? e->id : -1;
}

int kc_schemas_describe(const kc_schemas_t *s, int32_t id, const char **subject, int *version)
{
    const entry_t *e = by_id(s, id);
    if (!e)
        return -ENOENT;
    *subject = e->subject;
    *version = e->version;
    return 0;
}

size_t kc_schemas_count(const kc_schemas_t *s)
{
    return s->n;
}

int kc_schemas_entry(const kc_schemas_t *s, size_t i, kc_schema_info_t *out)
{
    if (i >= s->n)
        return -ENOENT;
    const entry_t *e = &s->entries[i];
    *out = (kc_schema_info_t){e->id, e->subject, e->version, e->text};
    return 0;
}

int kc_avro_value_new(kc_schemas_t *s, const char *subject, avro_value_t *out)
{
    const entry_t *e = newest(s, subject);
    if (!e || !e->iface)
        return -ENOENT;
    return avro_generic_value_new(e->iface, out) == 0 ? 0 : -ENOMEM;
}

int kc_avro_encode(kc_schemas_t *s, const char *subject, avro_value_t *v, kc_buf_t *out)
{
    const entry_t *e = newest(s, subject);
    if (!e)
        return -ENOENT;
    size_t size = 0;
    if (avro_value_sizeof(v, &size) != 0)
        return -EINVAL;
    kc_buf_reserve(out, 5 + size);
    unsigned char *p = (unsigned char *)out->data + out->len;
    uint32_t id = (uint32_t)e->id;
    p[0] = 0;
    p[1] = (unsigned char)(id >> 24);
    p[2] = (unsigned char)(id >> 16);
    p[3] = (unsigned char)(id >> 8);
    p[4] = (unsigned char)id;
    avro_writer_t w = avro_writer_memory((const char *)p + 5, (int64_t)size);
    if (!w)
        return -ENOMEM;
    int rc = avro_value_write(w, v);
    avro_writer_free(w);
    if (rc != 0)
        return -EINVAL;
    out->len += 5 + size;
    out->data[out->len] = '\0';
    return 0;
}

/* ---- validation before decoding ----
 *
 * avro-c trusts length prefixes: a string that claims 2^60 bytes makes it allocate that much
 * before it finds the input is shorter. So every record is first walked against its writer's
 * schema without allocating: lengths must fit in what is left, union and enum indexes must
 * exist, varints must end within 10 bytes, and nesting is bounded. */

#define MAX_DEPTH 64
#define MAX_ZERO_SIZE_ITEMS 100000

static int read_varint(const unsigned char **p, const unsigned char *end, int64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*p >= end)
            return -1;
        unsigned char b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return -1;
}

static int validate(avro_schema_t sc, const unsigned char **p, const unsigned char *end, int depth);

/* Blocks of an array or map: count, then (when the count is negative) a byte size, items. */
static int validate_blocks(avro_schema_t item, int is_map, const unsigned char **p,
                           const unsigned char *end, int depth)
{
    int64_t zero_size_items = 0;
    for (;;) {
        int64_t count;
        if (read_varint(p, end, &count) != 0)
            return -1;
        if (count == 0)
            return 0;
        if (count < 0) {
            int64_t bytes;
            if (count == INT64_MIN || read_varint(p, end, &bytes) != 0 || bytes < 0 ||
                bytes > end - *p)
                return -1;
            count = -count;
        }
        if (count > end - *p && count > MAX_ZERO_SIZE_ITEMS)
            return -1;
        for (int64_t i = 0; i < count; i++) {
            const unsigned char *before = *p;
            int64_t klen;
            if (is_map && (read_varint(p, end, &klen) != 0 || klen < 0 || klen > end - *p))
                return -1;
            if (is_map)
                *p += klen;
            if (validate(item, p, end, depth + 1) != 0)
                return -1;
            if (*p == before && ++zero_size_items > MAX_ZERO_SIZE_ITEMS)
                return -1;
        }
    }
}

static int validate(avro_schema_t sc, const unsigned char **p, const unsigned char *end, int depth)
{
    int64_t v;
    if (depth > MAX_DEPTH)
        return -1;
    switch (avro_typeof(sc)) {
    case AVRO_NULL: return 0;
    case AVRO_BOOLEAN:
        if (*p >= end || **p > 1)
            return -1;
        (*p)++;
        return 0;
    case AVRO_INT32:
        return read_varint(p, end, &v) == 0 && v >= INT32_MIN && v <= INT32_MAX ? 0 : -1;
    case AVRO_INT64: return read_varint(p, end, &v);
    case AVRO_FLOAT:
    case AVRO_DOUBLE: {
        int64_t n = avro_typeof(sc) == AVRO_FLOAT ? 4 : 8;
        if (end - *p < n)
            return -1;
        *p += n;
        return 0;
    }
    case AVRO_STRING:
    case AVRO_BYTES:
        if (read_varint(p, end, &v) != 0 || v < 0 || v > end - *p)
            return -1;
        *p += v;
        return 0;
    case AVRO_FIXED: {
        int64_t n = avro_schema_fixed_size(sc);
        if (n < 0 || end - *p < n)
            return -1;
        *p += n;
        return 0;
    }
    case AVRO_ENUM:
        return read_varint(p, end, &v) == 0 && v >= 0 &&
                       v < avro_schema_enum_number_of_symbols(sc)
                   ? 0
                   : -1;
    case AVRO_UNION:
        if (read_varint(p, end, &v) != 0 || v < 0 || (size_t)v >= avro_schema_union_size(sc))
            return -1;
        return validate(avro_schema_union_branch(sc, (int)v), p, end, depth + 1);
    case AVRO_RECORD: {
        size_t n = avro_schema_record_size(sc);
        for (size_t i = 0; i < n; i++)
            if (validate(avro_schema_record_field_get_by_index(sc, (int)i), p, end, depth + 1))
                return -1;
        return 0;
    }
    case AVRO_ARRAY: return validate_blocks(avro_schema_array_items(sc), 0, p, end, depth);
    case AVRO_MAP: return validate_blocks(avro_schema_map_values(sc), 1, p, end, depth);
    case AVRO_LINK: return validate(avro_schema_link_target(sc), p, end, depth + 1);
    default: return -1;
    }
}

int kc_avro_decode(kc_schemas_t *s, const void *buf, size_t len, kc_avro_msg_t *out,
                   char *errstr, size_t errstr_size)
{
    const unsigned char *p = buf;
    memset(out, 0, sizeof(*out));
    if (len > KC_AVRO_MAX_BYTES) {
        kc_strlcpyf(errstr, errstr_size, "record of %zu bytes is larger than %d", len,
                    KC_AVRO_MAX_BYTES);
        return -EMSGSIZE;
    }
    if (len < 5) {
        kc_strlcpyf(errstr, errstr_size, "record of %zu bytes is too short for the wire format",
                    len);
        return -EBADMSG;
    }
    if (p[0] != 0) {
        kc_strlcpyf(errstr, errstr_size, "magic byte is %u, expected 0", p[0]);
        return -EBADMSG;
    }
    int32_t id = (int32_t)(((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) |
                           ((uint32_t)p[3] << 8) | (uint32_t)p[4]);
    const entry_t *e = by_id(s, id);
    if (!e || !e->iface) {
        kc_strlcpyf(errstr, errstr_size, "unknown schema id %d", (int)id);
        return -ENOENT;
    }
    const unsigned char *cur = p + 5, *end = p + len;
    if (validate(e->schema, &cur, end, 0) != 0) {
        kc_strlcpyf(errstr, errstr_size, "malformed Avro data for schema id %d", (int)id);
        return -EBADMSG;
    }
    if (cur != end) {
        kc_strlcpyf(errstr, errstr_size, "bytes left over after the record");
        return -EBADMSG;
    }
    if (avro_generic_value_new(e->iface, &out->value) != 0) {
        kc_strlcpyf(errstr, errstr_size, "out of memory");
        return -ENOMEM;
    }
    avro_reader_t r = avro_reader_memory((const char *)p + 5, (int64_t)(len - 5));
    /* validate() has already proved the bytes are exactly one record of this schema. */
    int rc = r ? avro_value_read(r, &out->value) : ENOMEM;
    if (r)
        avro_reader_free(r);
    if (rc != 0) {
        kc_strlcpyf(errstr, errstr_size, "malformed Avro data");
        avro_value_decref(&out->value);
        memset(out, 0, sizeof(*out));
        return -EBADMSG;
    }
    out->schema_id = id;
    out->subject = e->subject;
    return 0;
}

void kc_avro_msg_free(kc_avro_msg_t *m)
{
    if (m && m->value.iface) {
        avro_value_decref(&m->value);
        memset(m, 0, sizeof(*m));
    }
}

/* ---- setters ---- */

static int field(avro_value_t *rec, const char *name, avro_value_t *out)
{
    return avro_value_get_by_name(rec, name, out, NULL) == 0 ? 0 : -ENOENT;
}

/* For a union field, selects the branch of the given type name ("string", "null", a record's
 * name); for any other field returns the field itself. */
static int slot(avro_value_t *rec, const char *name, const char *branch_name, avro_value_t *out)
{
    avro_value_t f;
    if (field(rec, name, &f) != 0)
        return -ENOENT;
    if (avro_value_get_type(&f) != AVRO_UNION) {
        *out = f;
        return 0;
    }
    int idx = -1;
    avro_schema_t us = avro_value_get_schema(&f);
    if (!avro_schema_union_branch_by_name(us, &idx, branch_name) || idx < 0)
        return -EINVAL;
    return avro_value_set_branch(&f, idx, out) == 0 ? 0 : -EINVAL;
}

int kc_avro_set_str_len(avro_value_t *rec, const char *name, const char *str, size_t len)
{
    avro_value_t f;
    if (slot(rec, name, "string", &f) != 0)
        return -ENOENT;
    char *copy = kc_xstrndup(str, len);
    int rc = strlen(copy) == len ? avro_value_set_string_len(&f, copy, len + 1) : EINVAL;
    free(copy);
    return rc == 0 ? 0 : -EINVAL;
}

int kc_avro_set_str(avro_value_t *rec, const char *name, const char *str)
{
    return kc_avro_set_str_len(rec, name, str, strlen(str));
}

int kc_avro_set_long(avro_value_t *rec, const char *name, int64_t v)
{
    avro_value_t f;
    if (slot(rec, name, "long", &f) != 0)
        return -ENOENT;
    return avro_value_set_long(&f, v) == 0 ? 0 : -EINVAL;
}

int kc_avro_set_int(avro_value_t *rec, const char *name, int32_t v)
{
    avro_value_t f;
    if (slot(rec, name, "int", &f) != 0)
        return -ENOENT;
    return avro_value_set_int(&f, v) == 0 ? 0 : -EINVAL;
}

static int set_null(avro_value_t *rec, const char *name)
{
    avro_value_t f;
    if (slot(rec, name, "null", &f) != 0)
        return -ENOENT;
    return avro_value_set_null(&f) == 0 ? 0 : -EINVAL;
}

int kc_avro_set_opt_str(avro_value_t *rec, const char *name, const char *str)
{
    return str ? kc_avro_set_str(rec, name, str) : set_null(rec, name);
}

int kc_avro_set_opt_long(avro_value_t *rec, const char *name, const int64_t *v)
{
    return v ? kc_avro_set_long(rec, name, *v) : set_null(rec, name);
}

int kc_avro_set_opt_bytes(avro_value_t *rec, const char *name, const void *p, size_t len)
{
    if (!p)
        return set_null(rec, name);
    avro_value_t f;
    if (slot(rec, name, "bytes", &f) != 0)
        return -ENOENT;
    return avro_value_set_bytes(&f, (void *)p, len) == 0 ? 0 : -EINVAL;
}

int kc_avro_append_str(avro_value_t *rec, const char *name, const char *str)
{
    avro_value_t arr, el;
    if (field(rec, name, &arr) != 0 || avro_value_get_type(&arr) != AVRO_ARRAY)
        return -ENOENT;
    if (avro_value_append(&arr, &el, NULL) != 0)
        return -ENOMEM;
    return avro_value_set_string(&el, str) == 0 ? 0 : -EINVAL;
}

int kc_avro_set_branch(avro_value_t *rec, const char *name, const char *branch_name,
                       avro_value_t *branch)
{
    avro_value_t f;
    if (field(rec, name, &f) != 0 || avro_value_get_type(&f) != AVRO_UNION)
        return -ENOENT;
    return slot(rec, name, branch_name, branch);
}

/* ---- getters ---- */

static const cJSON *default_of(const kc_schemas_t *s, avro_value_t *rec, const char *name)
{
    avro_schema_t rs = avro_value_get_schema(rec);
    if (!rs)
        return NULL;
    const char *ns = avro_schema_namespace(rs);
    char key[512];
    if (kc_strlcpyf(key, sizeof(key), "%s%s%s#%s", ns ? ns : "", ns ? "." : "",
                    avro_schema_name(rs), name) != 0)
        return NULL;
    for (size_t i = 0; i < s->ndefaults; i++)
        if (strcmp(s->defaults[i].key, key) == 0)
            return s->defaults[i].value;
    return NULL;
}

/* The field's value with unions unwrapped; 1 when the writer lacked it (def set instead). */
static int get(const kc_schemas_t *s, avro_value_t *rec, const char *name, avro_value_t *out,
               const cJSON **def)
{
    avro_value_t f;
    *def = NULL;
    if (field(rec, name, &f) != 0) {
        *def = default_of(s, rec, name);
        return *def ? 1 : -ENOENT;
    }
    if (avro_value_get_type(&f) == AVRO_UNION) {
        if (avro_value_get_current_branch(&f, out) != 0)
            return -EINVAL;
        return 0;
    }
    *out = f;
    return 0;
}

int kc_avro_get_str(const kc_schemas_t *s, avro_value_t *rec, const char *name, const char **str,
                    size_t *len)
{
    avro_value_t v;
    const cJSON *def;
    int rc = get(s, rec, name, &v, &def);
    if (rc == 1) {
        if (!cJSON_IsString(def))
            return -EINVAL;
        *str = def->valuestring;
        *len = strlen(def->valuestring);
        return 0;
    }
    size_t size = 0;
    if (rc != 0 || avro_value_get_type(&v) != AVRO_STRING ||
        avro_value_get_string(&v, str, &size) != 0 || size == 0)
        return -EINVAL;
    *len = size - 1; /* avro-c counts the NUL */
    return 0;
}

int kc_avro_get_long(const kc_schemas_t *s, avro_value_t *rec, const char *name, int64_t *out)
{
    avro_value_t v;
    const cJSON *def;
    int rc = get(s, rec, name, &v, &def);
    if (rc == 1) {
        if (!cJSON_IsNumber(def))
            return -EINVAL;
        *out = (int64_t)def->valuedouble;
        return 0;
    }
    if (rc != 0)
        return rc;
    if (avro_value_get_type(&v) == AVRO_INT32) {
        int32_t i;
        if (avro_value_get_int(&v, &i) != 0)
            return -EINVAL;
        *out = i;
        return 0;
    }
    return avro_value_get_type(&v) == AVRO_INT64 && avro_value_get_long(&v, out) == 0 ? 0 : -EINVAL;
}

int kc_avro_get_int(const kc_schemas_t *s, avro_value_t *rec, const char *name, int32_t *out)
{
    int64_t v;
    int rc = kc_avro_get_long(s, rec, name, &v);
    if (rc != 0)
        return rc;
    if (v < INT32_MIN || v > INT32_MAX)
        return -ERANGE;
    *out = (int32_t)v;
    return 0;
}

int kc_avro_get_opt_str(const kc_schemas_t *s, avro_value_t *rec, const char *name,
                        const char **str, size_t *len)
{
    avro_value_t v;
    const cJSON *def;
    int rc = get(s, rec, name, &v, &def);
    if ((rc == 1 && cJSON_IsNull(def)) || (rc == 0 && avro_value_get_type(&v) == AVRO_NULL)) {
        *str = NULL;
        *len = 0;
        return 0;
    }
    return kc_avro_get_str(s, rec, name, str, len);
}

int kc_avro_get_opt_long(const kc_schemas_t *s, avro_value_t *rec, const char *name, int64_t *out,
                         int *present)
{
    avro_value_t v;
    const cJSON *def;
    int rc = get(s, rec, name, &v, &def);
    if ((rc == 1 && cJSON_IsNull(def)) || (rc == 0 && avro_value_get_type(&v) == AVRO_NULL)) {
        *present = 0;
        *out = 0;
        return 0;
    }
    *present = 1;
    return kc_avro_get_long(s, rec, name, out);
}

int kc_avro_get_opt_bytes(const kc_schemas_t *s, avro_value_t *rec, const char *name,
                          const void **p, size_t *len)
{
    avro_value_t v;
    const cJSON *def;
    int rc = get(s, rec, name, &v, &def);
    *p = NULL;
    *len = 0;
    if ((rc == 1 && cJSON_IsNull(def)) || (rc == 0 && avro_value_get_type(&v) == AVRO_NULL))
        return 0;
    if (rc != 0 || avro_value_get_type(&v) != AVRO_BYTES)
        return -EINVAL;
    return avro_value_get_bytes(&v, p, len) == 0 ? 0 : -EINVAL;
}

int kc_avro_get_array(avro_value_t *rec, const char *name, avro_value_t *arr, size_t *n)
{
    if (field(rec, name, arr) != 0 || avro_value_get_type(arr) != AVRO_ARRAY)
        return -ENOENT;
    return avro_value_get_size(arr, n) == 0 ? 0 : -EINVAL;
}

int kc_avro_array_str(avro_value_t *arr, size_t i, const char **str, size_t *len)
{
    avro_value_t el;
    size_t size = 0;
    if (avro_value_get_by_index(arr, i, &el, NULL) != 0 || avro_value_get_type(&el) != AVRO_STRING ||
        avro_value_get_string(&el, str, &size) != 0 || size == 0)
        return -EINVAL;
    *len = size - 1;
    return 0;
}

int kc_avro_get_branch(avro_value_t *rec, const char *name, const char **bname,
                       avro_value_t *branch)
{
    avro_value_t f;
    if (field(rec, name, &f) != 0 || avro_value_get_type(&f) != AVRO_UNION ||
        avro_value_get_current_branch(&f, branch) != 0)
        return -ENOENT;
    avro_schema_t bs = avro_value_get_schema(branch);
    if (!bs)
        return -EINVAL;
    *bname = avro_value_get_type(branch) == AVRO_RECORD ? avro_schema_name(bs)
                                                         : avro_schema_type_name(bs);
    return 0;
}
