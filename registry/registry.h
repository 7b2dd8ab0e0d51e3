/* registry.h - the Confluent Schema Registry API over kchat's schemas, read-only, without a
 * server: reg_handle answers one request (kc_http_req_t in, kc_http_resp_t out), so the unit
 * tests drive it directly and main.c only listens.
 */
#ifndef KCHAT_REGISTRY_H
#define KCHAT_REGISTRY_H

#include <stddef.h>

#include "kchat/avro.h"
#include "kchat/httpd.h"
#include "kchat/metrics.h"

/* Longest subject name taken from a path (Confluent's limit is the topic name's 249 plus a
 * suffix). */
#define REG_SUBJECT_MAX 255
/* The compatibility level every subject keeps (schemas/README.md: each new version must read
 * every earlier one's records). */
#define REG_COMPATIBILITY "BACKWARD"
#define REG_CONTENT_TYPE "application/vnd.schemaregistry.v1+json"

struct cJSON;
typedef struct {
    kc_schemas_t *schemas;
    struct cJSON **parsed; /* each schema's JSON, in kc_schemas_entry's order (lookups) */
    kc_counter_t *answered[4]; /* found, not found, refused (read-only), bad request */
} reg_t;

/* Loads dir's schemas; metrics may be NULL (tests). 0, or -1 with err set. */
int reg_init(reg_t *r, const char *schemas_dir, kc_metrics_t *metrics, char *err, size_t errlen);
void reg_destroy(reg_t *r);
/* Answers one request of the registry's API (paths other than /health, /live, /metrics). */
void reg_handle(reg_t *r, const kc_http_req_t *req, kc_http_resp_t *resp);

#endif
