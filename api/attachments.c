/* attachments.c - the rest of an attachment's life after presign.c:
 *
 *   POST /attachments/:id/complete  the uploader says the file is in the object store. The
 *       API checks the stored object, not the client's word: it exists (HEAD), its size is
 *       within --attachment-max-bytes, its Content-Type is the one presigned. An image
 *       (kc_img_supported) is read whole (at most --image-max-bytes): its bytes must be of
 *       its declared type (kc_media_sniff), its header must give its dimensions, and a
 *       thumbnail is made once (lib/image.c, on libuv's thread pool) and stored beside it.
 *       The row of uploads then holds what was found, and a message may carry the
 *       attachment (the gateway reads that row, never the client's fields). A refused object
 *       is deleted at once. Completing twice answers the same.
 *   GET /conversations/:id/attachments/:att_id  a member gets short-lived presigned GET URLs
 *       (--download-ttl-s) of a file that a message of the conversation carries and that was
 *       not deleted; anyone else gets 404, the same as for a file that does not exist.
 *   The sweep (every --attachment-sweep-s) removes the objects of uploads that no message
 *       carries once their send_by has passed by --attachment-orphan-grace-s (the grace
 *       covers a message sent just in time and still on its way to the read model), and of
 *       uploads that only deleted messages carry. Replicas share the work: each claims rows with SKIP LOCKED, and a
 *       removal that fails is released for the next sweep.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "kchat/image.h"

#define THUMB_BOX 320
#define SWEEP_BATCH 100

/* The attachment as the API answers it and a message carries it. */
#define ATT_JSON                                                                                  \
    "json_build_object('id', id, 'key', key, 'name', name, 'size', size, 'content_type', "       \
    "content_type, 'width', width, 'height', height, 'thumb_key', thumb_key)::text"

typedef struct {
    api_req_t *r;
    char key[KC_CHAT_ATT_KEY_MAX + 1];
    char thumb_key[KC_CHAT_ATT_KEY_MAX + 1];
    char ctype[KC_CHAT_ATT_CTYPE_MAX + 1];
    long long size;
    int width, height;
    /* the thumbnail's work, off the loop */
    uv_work_t work;
    void *body;
    size_t body_len;
    kc_buf_t thumb;
    int thumb_rc;
    char why[128];
} complete_t;

static void complete_free(void *arg)
{
    complete_t *s = arg;
    free(s->body);
    kc_buf_free(&s->thumb);
    free(s);
}

static void count_check(api_t *a, const char *outcome)
{
    const char *lbl[] = {"outcome", outcome, NULL};
    kc_counter_inc(kc_metrics_counter(a->app.metrics, "kchat_api_attachments_checked_total",
                                      "Uploads checked against the stored object, by outcome "
                                      "(ok, missing, empty, too_large, wrong_type, bad_image, "
                                      "error).",
                                      lbl));
}

static void on_deleted_quietly(void *arg, const kc_s3_result_t *res)
{
    (void)arg;
    if (res->status != 204 && res->status != 200 && res->status != 404)
        kc_log_warn("attachments: removing a refused object: %s (status %ld)",
                    res->error ? res->error : "refused", res->status);
}

/* Refuses the upload: its object is deleted (the sweep removes what this misses). */
static void refuse(complete_t *s, int status, const char *code, const char *outcome,
                   const char *msg)
{
    api_t *a = s->r->a;
    count_check(a, outcome);
    if (kc_s3_request(a->s3, "DELETE", s->key, NULL, 0, NULL, 0, on_deleted_quietly, NULL) != 0)
        kc_log_warn("attachments: cannot remove the refused %s now", s->key);
    api_error(s->r, status, code, msg);
}

static void on_checked(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    count_check(r->a, err ? "error" : "ok");
    api_reply_row(r, res, err, 200, "attachment", "no such attachment");
}

/* What was found goes into the row; the answer is the attachment. */
static void record(complete_t *s)
{
    char size[24], w[16], h[16];
    (void)kc_strlcpyf(size, sizeof(size), "%lld", s->size);
    (void)kc_strlcpyf(w, sizeof(w), "%d", s->width);
    (void)kc_strlcpyf(h, sizeof(h), "%d", s->height);
    int image = s->width > 0;
    const char *params[] = {s->r->convo_id, s->r->user_id, size, image ? w : NULL,
                            image ? h : NULL, image ? s->thumb_key : NULL};
    (void)api_pg(s->r,
                 "UPDATE uploads SET size = $3::bigint, width = $4::int, height = $5::int, "
                 "thumb_key = $6, checked_at = now() "
                 "WHERE id = $1 AND user_id = $2 AND removed_at IS NULL RETURNING " ATT_JSON,
                 6, params, on_checked);
}

static void on_thumb_stored(void *arg, const kc_s3_result_t *res)
{
    complete_t *s = arg;
    if (res->status != 200) {
        count_check(s->r->a, "error");
        api_refuse(s->r, 502, "storage_unavailable",
                   "the thumbnail could not be stored: complete again", 5);
        return;
    }
    record(s);
}

static void thumb_work(uv_work_t *w)
{
    complete_t *s = w->data;
    api_t *a = s->r->a;
    s->thumb_rc = kc_img_thumbnail(s->body, s->body_len, s->ctype, THUMB_BOX,
                                   a->cfg.image_max_pixels, &s->thumb, &s->width, &s->height,
                                   s->why, sizeof(s->why));
}

static void thumb_done(uv_work_t *w, int status)
{
    complete_t *s = w->data;
    api_t *a = s->r->a;
    free(s->body);
    s->body = NULL;
    if (status != 0 || s->thumb_rc != 0) {
        char msg[192];
        (void)kc_strlcpyf(msg, sizeof(msg), "the image cannot be read: %s",
                          status ? "cancelled" : s->why);
        refuse(s, 415, "invalid_image", "bad_image", msg);
        return;
    }
    if (kc_s3_request(a->s3, "PUT", s->thumb_key, s->thumb.data, s->thumb.len, "image/webp", 0,
                      on_thumb_stored, s) != 0) {
        count_check(a, "error");
        api_refuse(s->r, 503, "unavailable", "the object store is busy: complete again", 1);
    }
}

static void on_got(void *arg, const kc_s3_result_t *res)
{
    complete_t *s = arg;
    api_t *a = s->r->a;
    if (res->status != 200) {
        count_check(a, "error");
        api_refuse(s->r, 502, "storage_unavailable", "the upload could not be read: complete "
                   "again", 5);
        return;
    }
    const char *sniffed = kc_media_sniff(res->body, res->body_len);
    if (!sniffed || strcasecmp(sniffed, s->ctype) != 0) {
        refuse(s, 415, "attachment_type_mismatch", "wrong_type",
               "the uploaded bytes are not of the declared media type");
        return;
    }
    s->body = kc_xmalloc(res->body_len ? res->body_len : 1);
    memcpy(s->body, res->body, res->body_len);
    s->body_len = res->body_len;
    s->work.data = s;
    if (uv_queue_work(a->app.loop, &s->work, thumb_work, thumb_done) != 0) {
        count_check(a, "error");
        api_refuse(s->r, 503, "unavailable", "the image cannot be read now: complete again", 1);
    }
}

static void on_head(void *arg, const kc_s3_result_t *res)
{
    complete_t *s = arg;
    api_t *a = s->r->a;
    char msg[128];
    if (res->status == 404) {
        count_check(a, "missing");
        api_error(s->r, 409, "not_uploaded", "nothing was uploaded for this attachment yet");
        return;
    }
    if (res->status != 200 || res->content_length < 0) {
        count_check(a, "error");
        api_refuse(s->r, 502, "storage_unavailable",
                   "the object store could not be asked: complete again", 5);
        return;
    }
    s->size = res->content_length;
    if (s->size > a->cfg.attachment_max_bytes) {
        (void)kc_strlcpyf(msg, sizeof(msg), "attachments are at most %lld bytes",
                          a->cfg.attachment_max_bytes);
        refuse(s, 413, "attachment_too_large", "too_large", msg);
        return;
    }
    if (s->size == 0) {
        refuse(s, 400, "invalid_request", "empty", "the uploaded file is empty");
        return;
    }
    if (strcasecmp(res->content_type, s->ctype) != 0) {
        refuse(s, 415, "attachment_type_mismatch", "wrong_type",
               "the object was stored with another media type than the one presigned");
        return;
    }
    if (!kc_img_supported(s->ctype)) {
        record(s);
        return;
    }
    if (s->size > a->cfg.image_max_bytes) {
        (void)kc_strlcpyf(msg, sizeof(msg), "images are at most %lld bytes",
                          a->cfg.image_max_bytes);
        refuse(s, 413, "attachment_too_large", "too_large", msg);
        return;
    }
    if (kc_s3_request(a->s3, "GET", s->key, NULL, 0, NULL, (size_t)a->cfg.image_max_bytes, on_got,
                      s) != 0) {
        count_check(a, "error");
        api_refuse(s->r, 503, "unavailable", "the object store is busy: complete again", 1);
    }
}

static void on_upload(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    complete_t *s = r->state;
    if (err || !res) {
        api_error(r, 503, "unavailable", "the upload could not be read");
        return;
    }
    if (PQntuples(res) != 1) {
        api_error(r, 404, "not_found", "no such attachment");
        return;
    }
    if (!PQgetisnull(res, 0, 2)) { /* completed before: the same answer */
        kc_buf_t b = {0};
        kc_buf_puts(&b, PQgetvalue(res, 0, 2));
        api_reply(r, 200, &b);
        return;
    }
    (void)kc_strlcpyf(s->key, sizeof(s->key), "%s", PQgetvalue(res, 0, 0));
    (void)kc_strlcpyf(s->ctype, sizeof(s->ctype), "%s", PQgetvalue(res, 0, 1));
    /* beside the original: attachments/<convo>/<id>/t.webp */
    (void)kc_strlcpyf(s->thumb_key, sizeof(s->thumb_key), "%s", s->key);
    char *f = strstr(s->thumb_key, "/f/");
    if (!f) {
        api_error(r, 500, "internal", "the upload's key is not one this server made");
        return;
    }
    strcpy(f, "/t.webp");
    if (kc_s3_request(r->a->s3, "HEAD", s->key, NULL, 0, NULL, 0, on_head, s) != 0)
        api_refuse(r, 503, "unavailable", "the object store is busy: complete again", 1);
}

void api_attachment_complete(api_req_t *r)
{
    if (!r->a->s3) {
        api_error(r, 404, "attachments_unavailable",
                  "this server has no object store for attachments");
        return;
    }
    complete_t *s = kc_xcalloc(1, sizeof(*s));
    s->r = r;
    r->state = s;
    r->state_free = complete_free;
    const char *params[] = {r->convo_id, r->user_id};
    (void)api_pg(r,
                 "SELECT key, content_type, CASE WHEN checked_at IS NOT NULL THEN " ATT_JSON
                 " END FROM uploads WHERE id = $1 AND user_id = $2 AND removed_at IS NULL",
                 2, params, on_upload);
}

/* ---- download ---- */

static void on_download(void *arg, const PGresult *res, const char *err)
{
    api_req_t *r = arg;
    api_t *a = r->a;
    if (err || !res) {
        api_error(r, 503, "unavailable", "the attachment could not be read");
        return;
    }
    if (PQntuples(res) != 1) {
        api_error(r, 404, "not_found", "no such attachment");
        return;
    }
    long long now = kc_now_ms() / 1000;
    kc_buf_t url = {0}, b = {0};
    char exp[32];
    kc_iso_ms((now + a->cfg.download_ttl_s) * 1000, exp);
    kc_s3_presign(&a->s3cfg, "GET", PQgetvalue(res, 0, 0), NULL, now, a->cfg.download_ttl_s,
                  &url);
    kc_buf_puts(&b, "{\"url\":\"");
    kc_buf_json_str(&b, url.data, url.len);
    kc_buf_puts(&b, "\",\"thumb_url\":");
    if (PQgetisnull(res, 0, 1)) {
        kc_buf_puts(&b, "null");
    } else {
        kc_buf_reset(&url);
        kc_s3_presign(&a->s3cfg, "GET", PQgetvalue(res, 0, 1), NULL, now,
                      a->cfg.download_ttl_s, &url);
        kc_buf_putc(&b, '"');
        kc_buf_json_str(&b, url.data, url.len);
        kc_buf_putc(&b, '"');
    }
    kc_buf_printf(&b, ",\"expires_at\":\"%s\",\"attachment\":%s}", exp, PQgetvalue(res, 0, 2));
    kc_buf_free(&url);
    api_reply(r, 200, &b);
}

void api_attachment_get(api_req_t *r)
{
    if (!r->a->s3) {
        api_error(r, 404, "attachments_unavailable",
                  "this server has no object store for attachments");
        return;
    }
    const char *params[] = {r->convo_id, r->member_id, r->user_id};
    /* A member, and a message of the conversation that carries it and is not deleted. */
    (void)api_pg(r,
                 "SELECT key, thumb_key, " ATT_JSON " FROM uploads u "
                 "WHERE u.id = $2 AND u.convo_id = $1 AND u.removed_at IS NULL "
                 "AND EXISTS (SELECT 1 FROM rm.members WHERE convo_id = $1 AND user_id = $3) "
                 "AND EXISTS (SELECT 1 FROM rm.messages m WHERE m.convo_id = $1 "
                 "            AND m.deleted_at IS NULL "
                 "            AND m.attachments @> jsonb_build_array(jsonb_build_object('id', "
                 "                                                    $2::text)))",
                 3, params, on_download);
}

/* ---- the sweep ---- */

typedef struct {
    api_t *a;
    char id[KC_CHAT_ATT_ID_MAX + 1];
    char reason[16];
    int left; /* objects still being removed */
    int failed;
} removal_t;

static void on_released(void *arg, const PGresult *res, const char *err)
{
    (void)arg;
    (void)res;
    if (err)
        kc_log_warn("attachments: releasing an upload for the next sweep: %s", err);
}

static void on_removed(void *arg, const kc_s3_result_t *res)
{
    removal_t *m = arg;
    if (res->status != 204 && res->status != 200 && res->status != 404)
        m->failed = 1;
    if (--m->left > 0)
        return;
    api_t *a = m->a;
    if (m->failed) {
        /* Not removed: the next sweep tries again. */
        kc_pg_t *pg = api_pg_conn(a);
        const char *params[] = {m->id};
        if (!pg || kc_pg_query(pg, "UPDATE uploads SET removed_at = NULL WHERE id = $1", 1,
                               params, on_released, NULL) != 0)
            kc_log_warn("attachments: %s stays claimed; a restart of the sweep releases it",
                        m->id);
    } else {
        const char *lbl[] = {"reason", m->reason, NULL};
        kc_counter_inc(kc_metrics_counter(a->app.metrics, "kchat_api_attachments_removed_total",
                                          "Uploads whose objects were removed, by reason "
                                          "(orphan: never sent; deleted: its message was).",
                                          lbl));
    }
    free(m);
}

static void remove_object(removal_t *m, const char *key)
{
    m->left++;
    if (kc_s3_request(m->a->s3, "DELETE", key, NULL, 0, NULL, 0, on_removed, m) != 0) {
        kc_s3_result_t busy = {.status = 0, .error = "busy", .content_length = -1};
        on_removed(m, &busy);
    }
}

static void on_claimed(void *arg, const PGresult *res, const char *err)
{
    api_t *a = arg;
    a->sweeping = 0;
    if (err || !res) {
        kc_log_warn("attachments: the sweep could not claim uploads: %s", err ? err : "no result");
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        removal_t *m = kc_xcalloc(1, sizeof(*m));
        m->a = a;
        (void)kc_strlcpyf(m->id, sizeof(m->id), "%s", PQgetvalue(res, i, 0));
        (void)kc_strlcpyf(m->reason, sizeof(m->reason), "%s", PQgetvalue(res, i, 3));
        m->left = 1; /* held until both removals are asked */
        remove_object(m, PQgetvalue(res, i, 1));
        if (!PQgetisnull(res, i, 2))
            remove_object(m, PQgetvalue(res, i, 2));
        kc_s3_result_t done = {.status = 204, .content_length = -1};
        on_removed(m, &done);
    }
}

static void sweep(uv_timer_t *t)
{
    api_t *a = t->data;
    if (a->sweeping || a->stopping)
        return;
    kc_pg_t *pg = api_pg_conn(a);
    if (!pg)
        return;
    char grace[24], batch[16];
    (void)kc_strlcpyf(grace, sizeof(grace), "%lld", a->cfg.attachment_orphan_grace_s);
    (void)kc_strlcpyf(batch, sizeof(batch), "%d", SWEEP_BATCH);
    const char *params[] = {grace, batch};
    /* A message that carries the upload: deleted ones count as none (their files go too). */
#define CARRIED(deleted)                                                                          \
    "EXISTS (SELECT 1 FROM rm.messages m WHERE m.convo_id = u.convo_id AND m.deleted_at IS "     \
    deleted " NULL AND m.attachments @> jsonb_build_array(jsonb_build_object('id', u.id)))"
    if (kc_pg_query(pg,
                    "WITH c AS (SELECT u.id, CASE WHEN " CARRIED("NOT") " THEN 'deleted' "
                    "                         ELSE 'orphan' END AS reason "
                    "           FROM uploads u WHERE u.removed_at IS NULL "
                    "           AND NOT " CARRIED("") " AND (" CARRIED("NOT") " OR "
                    "             u.send_by < now() - make_interval(secs => $1::int)) "
                    "           LIMIT $2::int FOR UPDATE OF u SKIP LOCKED) "
                    "UPDATE uploads SET removed_at = now() FROM c WHERE uploads.id = c.id "
                    "RETURNING uploads.id, uploads.key, uploads.thumb_key, c.reason",
                    2, params, on_claimed, a) == 0)
        a->sweeping = 1;
#undef CARRIED
}

int api_attachments_start(api_t *a, char *err, size_t errlen)
{
    if (!*a->cfg.s3_endpoint)
        return 0;
    a->s3 = kc_s3_new(a->app.loop, &a->s3cfg, 30000, err, errlen);
    if (!a->s3)
        return -1;
    if (uv_timer_init(a->app.loop, &a->sweep_timer) != 0) {
        kc_strlcpyf(err, errlen, "cannot make the sweep's timer");
        return -1;
    }
    a->sweep_timer.data = a;
    uint64_t every = (uint64_t)a->cfg.attachment_sweep_s * 1000;
    if (uv_timer_start(&a->sweep_timer, sweep, every, every) != 0) {
        kc_strlcpyf(err, errlen, "cannot start the sweep's timer");
        return -1;
    }
    return 0;
}

void api_attachments_close(api_t *a)
{
    if (a->sweep_timer.loop && !uv_is_closing((uv_handle_t *)&a->sweep_timer))
        uv_close((uv_handle_t *)&a->sweep_timer, NULL);
    if (a->s3)
        kc_s3_close(a->s3);
    a->s3 = NULL;
}
