/* s3.h - an S3 (or MinIO) client: presigned URLs and requests on the daemon's libuv loop.
 *
 * Every URL is path-style, <endpoint>/<bucket>/<key>, and signed with Signature Version 4 in
 * its query string (no Authorization header): the same code makes the URLs handed to clients
 * (kchat-api's POST /attachments/presign) and signs the requests the daemons send themselves,
 * each presigned for KC_S3_REQUEST_TTL_S seconds. The payload is never signed
 * (UNSIGNED-PAYLOAD); a PUT's Content-Type is, so the upload must send the one it was signed
 * for. HMAC-SHA256 and SHA-256 are libsodium's.
 *
 * The requests go through the loop's HTTP client (kchat/httpc.h: libcurl's multi interface
 * driven by the loop, nothing blocking it). Each request is bounded by the client's timeout;
 * at most KC_S3_MAX_INFLIGHT run at once and more are refused, so a caller sheds load instead
 * of queueing it without bound.
 */
#ifndef KCHAT_S3_H
#define KCHAT_S3_H

#include <stddef.h>
#include <uv.h>

#include "kchat/buf.h"
#include "kchat/httpc.h"

/* Where the object store is and who we are to it. Strings are borrowed, not copied. */
typedef struct {
    const char *endpoint; /* http(s)://host[:port], no path */
    const char *bucket;
    const char *region; /* MinIO's default is us-east-1 */
    const char *access_key;
    const char *secret_key;
} kc_s3_cfg_t;

/* True when endpoint is http(s)://host[:port] with no path (nor query, fragment, user info or
 * white space). */
int kc_s3_endpoint_ok(const char *endpoint);
/* Checks the endpoint is http(s)://host[:port] with no path (nor query, fragment, user info
 * or white space), then that bucket, region, access key and secret key are given. 0, or -1
 * with err ("endpoint must be http(s)://host[:port] without a path", "... needs ..."). */
int kc_s3_cfg_check(const kc_s3_cfg_t *cfg, char *err, size_t errlen);

/* Appends to url the presigned URL (SigV4 query authentication, path-style
 * <endpoint>/<bucket>/<key>) of method ("GET", "PUT", "HEAD", "DELETE") on key, valid ttl_s
 * seconds from now_s; content_type, when not NULL, is a signed header the request must send.
 * The signed Host is the endpoint's host and port, without the scheme's default port (the
 * Host header HTTP clients send for it). cfg must have passed kc_s3_cfg_check. */
void kc_s3_presign(const kc_s3_cfg_t *cfg, const char *method, const char *key,
                   const char *content_type, long long now_s, long long ttl_s, kc_buf_t *url);

/* RFC 3986 percent-encoding as SigV4 wants it: unreserved characters stay, '/' stays when
 * keep_slash, every other byte becomes %XX (upper case). */
void kc_s3_uri_encode(kc_buf_t *b, const char *s, int keep_slash);

/* The same with more query parameters, signed with the rest: params is their canonical form
 * (names and values URI-encoded, "name=value" joined by '&', in byte order of the names), and
 * every name must sort after "X-Amz-" (a lower-case one does: "list-type=2&prefix=a%2F").
 * key may be empty (the bucket itself, as a listing wants). */
void kc_s3_presign_params(const kc_s3_cfg_t *cfg, const char *method, const char *key,
                          const char *params, const char *content_type, long long now_s,
                          long long ttl_s, kc_buf_t *url);

/* The signing under kc_s3_presign, for any host and path: appends to query the canonical
 * query string of a request of method on path (already URI-encoded, starting with '/') sent
 * to host, then "&X-Amz-Signature=<hex>". Signed headers: content-type (when not NULL) and
 * host. Exposed so that the tests can check it against AWS's published examples, which are
 * virtual-hosted style. */
void kc_s3_sign_query(const char *method, const char *host, const char *path, const char *region,
                      const char *access_key, const char *secret_key, const char *content_type,
                      long long now_s, long long ttl_s, kc_buf_t *query);

/* ---- requests on the loop ---- */

#define KC_S3_MAX_INFLIGHT 64
/* How long the URL of a request the client sends is valid (its clock may be a little off the
 * store's; the request itself is bounded by the client's timeout). */
#define KC_S3_REQUEST_TTL_S 60

typedef struct kc_s3 kc_s3_t;

/* A request's outcome and callback are the HTTP client's (kchat/httpc.h): a GET's body is
 * kept, the other methods' dropped. */
typedef kc_httpc_result_t kc_s3_result_t;
typedef kc_httpc_cb kc_s3_cb;

/* A client on loop. cfg's strings must outlive the client (cfg itself is copied).
 * timeout_ms (> 0) bounds each request, from its start to its last byte. The first call
 * initialises libcurl for the whole process (curl_global_init, once, under a pthread_once):
 * make the first client before starting threads that use libcurl themselves. NULL with err
 * when cfg fails kc_s3_cfg_check or libcurl cannot start. */
kc_s3_t *kc_s3_new(uv_loop_t *loop, const kc_s3_cfg_t *cfg, long timeout_ms, char *err,
                   size_t errlen);

/* Starts method ("GET", "HEAD", "PUT" or "DELETE") on key: body/len is PUT's body (copied),
 * content_type its Content-Type (NULL: none; signed when given); both are ignored for the
 * other methods. A
 * GET's body larger than max_body ends the request with error "too large" (so does a
 * Content-Length announcing one). cb runs exactly once, on the loop, later (never inside this
 * call). 0, or -1 when it cannot start (cb not called): an unknown method, an empty key,
 * KC_S3_MAX_INFLIGHT requests already in flight, a content type with control characters, or
 * from a callback run by kc_s3_close. */
int kc_s3_request(kc_s3_t *s, const char *method, const char *key, const void *body, size_t len,
                  const char *content_type, size_t max_body, kc_s3_cb cb, void *arg);

/* Requests in flight (started and not yet called back). */
size_t kc_s3_inflight(const kc_s3_t *s);

/* Cancels what is in flight: each callback runs once, with status 0 and error "cancelled",
 * before this returns (a callback may start nothing new: kc_s3_request then fails). Frees the
 * client once its loop handles are closed, on the loop; s must not be used after this call.
 * May be called from a request's callback. NULL is a no-op. */
void kc_s3_close(kc_s3_t *s);

#endif
