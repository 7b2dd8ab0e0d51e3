/* schema_registry.h - a client of a Confluent-compatible schema registry (kchat-registry,
 * Confluent Schema Registry, Karapace, Apicurio's ccompat API), blocking, for start-up and
 * kchatctl only: never on a daemon's loop once it serves.
 *
 * The ids on kchat's topics are those of schemas/registry.json, written into every record
 * since the first. A registry that readers use must therefore give each of kchat's schemas
 * that same id; kc_sr_check verifies it at a daemon's start, so a daemon whose schemas are
 * not registered (or registered under other ids) refuses to start instead of writing
 * records that readers cannot look up or would misread.
 */
#ifndef KCHAT_SCHEMA_REGISTRY_H
#define KCHAT_SCHEMA_REGISTRY_H

#include <stddef.h>

#include "kchat/app.h"
#include "kchat/avro.h"

struct cJSON;

/* Largest answer read from a registry. */
#define KC_SR_MAX_ANSWER (4 * 1024 * 1024)

typedef struct {
    long status;         /* HTTP status, 0 when no answer came (error says why) */
    struct cJSON *json;  /* the parsed body, NULL when it was not JSON (free with cJSON_Delete) */
    int error_code;      /* the registry's error_code, 0 when none */
    char error[256];     /* the transport's error, or the registry's message */
} kc_sr_answer_t;

/* A client of one registry: one libcurl handle, so the requests of a check or of
 * register-schemas share one connection. */
typedef struct kc_sr kc_sr_t;

/* NULL (err says why) when libcurl cannot start. timeout_ms bounds each request. */
kc_sr_t *kc_sr_open(const char *base_url, long timeout_ms, char *err, size_t errlen);
void kc_sr_close(kc_sr_t *sr);

/* One request: method and path ("/subjects/<escaped>/versions"), body NULL or JSON. 0 when an
 * answer came (any status), -1 when none did. Free out->json. */
int kc_sr_call(kc_sr_t *sr, const char *method, const char *path, const char *body,
               kc_sr_answer_t *out);
void kc_sr_answer_free(kc_sr_answer_t *a);

/* path = prefix + the subject escaped for a URL + suffix; 0 or -1 when it does not fit. */
int kc_sr_subject_path(char *out, size_t outlen, const char *prefix, const char *subject,
                       const char *suffix);

/* The body {"schema": text} (plus, when id > 0, "id" and "version" for IMPORT mode); the
 * caller frees it. */
char *kc_sr_schema_body(const kc_schema_info_t *e, int with_id);

/* Looks every schema of s up in the registry at cfg->url and checks that it holds it under
 * the id of registry.json (an empty url checks nothing). A registry that does not answer, or
 * lacks a schema, is asked again every 0.5 s for up to cfg->wait_ms (one rolling out beside
 * the daemon). 0, or -1 with err naming the first schema missing or under another id, or
 * the registry that did not answer. */
int kc_sr_check(const kc_schemas_t *s, const kc_sr_cfg_t *cfg, char *err, size_t errlen);

#endif
