/* s3_sync.h - blocking requests to the object store (libcurl's easy interface), for kchatctl
 * and for the few steps of a daemon that may block: the archiver's look at what the archive
 * holds when it is given a partition. The daemons' other requests go through kchat/s3.h on
 * their loop.
 *
 * Every request is SigV4-presigned (kc_s3_presign_params), bounded by a connect timeout of 10 s
 * and given up when it moves less than 1 KiB/s for a minute; a long transfer is not cut.
 */
#ifndef KCHAT_S3_SYNC_H
#define KCHAT_S3_SYNC_H

#include <sodium.h>
#include <stddef.h>
#include <stdio.h>

#include "kchat/buf.h"
#include "kchat/s3.h"

/* Where a GET's body goes: a file, or a buffer of at most max bytes (a larger body fails the
 * request); hashed on the way when sha is set. */
typedef struct {
    FILE *out;
    kc_buf_t *body;
    size_t max;
    crypto_hash_sha256_state *sha;
} kc_s3_sink_t;

/* One request on key (empty: the bucket) with more query parameters (canonical, as
 * kc_s3_presign_params wants; or NULL). A PUT sends in_len bytes of in from where it stands.
 * Returns the HTTP status (an error status included: its body is dropped), or -1 with err
 * when no answer came. cfg must have passed kc_s3_cfg_check. */
long kc_s3_sync(const kc_s3_cfg_t *cfg, const char *method, const char *key, const char *params,
                FILE *in, long long in_len, kc_s3_sink_t *sink, char *err, size_t errlen);

/* ListObjectsV2 of every key under prefix whose name sorts after start_after (NULL: all),
 * following the continuation tokens: the keys, or with delimiter set the common prefixes (the
 * "folders") instead, in the store's order (byte order), appended to *out (the caller frees
 * each and the array). At most max_items. 0, or -1 with err. */
int kc_s3_sync_list(const kc_s3_cfg_t *cfg, const char *prefix, const char *delimiter,
                    const char *start_after, size_t max_items, char ***out, size_t *n, char *err,
                    size_t errlen);

#endif
