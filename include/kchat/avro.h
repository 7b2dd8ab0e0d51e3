/* avro.h - kchat's Avro codec: the schema registry file and the Confluent wire format.
 *
 * Every record on kchat's topics is framed as magic byte 0, a 4-byte big-endian schema id
 * and the Avro binary encoding, so standard consumers (Confluent deserializers, fastavro)
 * read them. Ids come from schemas/registry.json, laid out like a Confluent registry (a
 * subject per topic value, versions in order, global ids), so a registry server can take
 * over later without changing a byte on the wire.
 *
 * Writers always use the newest version of a subject. Readers decode with the WRITER's
 * schema (found by the id in the frame) and read fields by name: avro-c 1.11's schema
 * resolution ignores default values, so a field that the writer's version lacks is filled
 * here from the default in the newest schema. A field with neither is an error.
 *
 * Values are avro-c generic values: kc_avro_value_new gives one to fill (free it with
 * avro_value_decref), kc_avro_decode one to read (free with kc_avro_msg_free).
 */
#ifndef KCHAT_AVRO_H
#define KCHAT_AVRO_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#include "kchat/buf.h"

/* Largest framed record accepted by kc_avro_decode. */
#define KC_AVRO_MAX_BYTES (1024 * 1024)

typedef struct kc_schemas kc_schemas_t;

/* Loads dir/registry.json and the schema files it names. */
kc_schemas_t *kc_schemas_load(const char *dir, char *errstr, size_t errstr_size);
void kc_schemas_destroy(kc_schemas_t *s);
/* The id writers use for a subject (its newest version), or -1. */
int32_t kc_schemas_current_id(const kc_schemas_t *s, const char *subject);

/* The subject and version of a schema id: 0, or -ENOENT for an id registry.json lacks. */
int kc_schemas_describe(const kc_schemas_t *s, int32_t id, const char **subject, int *version);

/* The schemas in registry.json's order (subject by subject, versions ascending), for a
 * registry server. text is the schema as compact JSON; all of it lives as long as s. */
typedef struct {
    int32_t id;
    const char *subject;
    int version;
    const char *text;
} kc_schema_info_t;
size_t kc_schemas_count(const kc_schemas_t *s);
/* 0, or -ENOENT when i >= kc_schemas_count(s). */
int kc_schemas_entry(const kc_schemas_t *s, size_t i, kc_schema_info_t *out);

/* A fresh value of the subject's newest schema. Returns 0 or -ENOENT. */
int kc_avro_value_new(kc_schemas_t *s, const char *subject, avro_value_t *out);
/* Appends the framed encoding of v (a value of the subject's newest schema) to out. */
int kc_avro_encode(kc_schemas_t *s, const char *subject, avro_value_t *v, kc_buf_t *out);

typedef struct {
    int32_t schema_id;
    const char *subject; /* owned by the registry */
    avro_value_t value;
} kc_avro_msg_t;

/* Decodes a framed record. Errors (a negative value, errstr says which): too large, too
 * short, wrong magic byte, unknown schema id, bad Avro, bytes left over. */
int kc_avro_decode(kc_schemas_t *s, const void *buf, size_t len, kc_avro_msg_t *out,
                   char *errstr, size_t errstr_size);
void kc_avro_msg_free(kc_avro_msg_t *m);

/* Field setters on a record value. The union helpers pick the branch by type: *_opt_* take
 * NULL for the null branch. */
int kc_avro_set_str(avro_value_t *rec, const char *field, const char *str);
int kc_avro_set_str_len(avro_value_t *rec, const char *field, const char *str, size_t len);
int kc_avro_set_long(avro_value_t *rec, const char *field, int64_t v);
int kc_avro_set_int(avro_value_t *rec, const char *field, int32_t v);
int kc_avro_set_opt_str(avro_value_t *rec, const char *field, const char *str);
int kc_avro_set_opt_long(avro_value_t *rec, const char *field, const int64_t *v);
int kc_avro_set_opt_bytes(avro_value_t *rec, const char *field, const void *p, size_t len);
int kc_avro_append_str(avro_value_t *rec, const char *field, const char *str);
/* Selects the union branch named `name` (a record's short name) of the field and returns it,
 * for the caller to fill; for an optional record ([null, X]) use the name of X. */
int kc_avro_set_branch(avro_value_t *rec, const char *field, const char *name,
                       avro_value_t *branch);

/* Field getters, by name, with the newest schema's default for a field the writer lacked.
 * Strings are returned with their length (no NUL counted) and stay valid as long as the
 * value does. The *_opt_* getters give NULL / 0 for the null branch. */
int kc_avro_get_str(const kc_schemas_t *s, avro_value_t *rec, const char *field, const char **str,
                    size_t *len);
int kc_avro_get_long(const kc_schemas_t *s, avro_value_t *rec, const char *field, int64_t *v);
int kc_avro_get_int(const kc_schemas_t *s, avro_value_t *rec, const char *field, int32_t *v);
int kc_avro_get_opt_str(const kc_schemas_t *s, avro_value_t *rec, const char *field,
                        const char **str, size_t *len);
int kc_avro_get_opt_long(const kc_schemas_t *s, avro_value_t *rec, const char *field,
                         int64_t *v, int *present);
int kc_avro_get_opt_bytes(const kc_schemas_t *s, avro_value_t *rec, const char *field,
                          const void **p, size_t *len);
/* The array field's length, and its i-th string. */
int kc_avro_get_array(avro_value_t *rec, const char *field, avro_value_t *arr, size_t *n);
int kc_avro_array_str(avro_value_t *arr, size_t i, const char **str, size_t *len);
/* The union field's current branch and that branch's record name (e.g. "SendMessage"), or
 * "null". */
int kc_avro_get_branch(avro_value_t *rec, const char *field, const char **name,
                       avro_value_t *branch);

/* Fills v from the Avro JSON encoding of a value of v's schema (records as objects, unions as
 * null or {"<full type name>": value}, bytes as a string of code points 0-255), as
 * fastavro's json_writer and the Avro tools write it. For tools, tests and rows Postgres
 * wrote in that encoding (api/relay.c): the daemons build their own records field by
 * field. Limits of the JSON parser: integers must be below 2^53 in magnitude and bytes
 * cannot hold \u0000. Returns 0, or -EINVAL with errstr naming the
 * JSON path. */
struct cJSON;
int kc_avro_from_json(avro_value_t *v, const struct cJSON *json, char *errstr, size_t errstr_size);

#endif
