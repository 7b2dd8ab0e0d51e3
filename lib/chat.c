/* chat.c - the chat's wire formats, straight between bytes and structs. */
#include "kchat/chat.h"

#include <errno.h>
#include <string.h>

#include "kchat/util.h"

/* ---- Avro binary ---- */

void kc_avro_put_header(kc_buf_t *b, int32_t schema_id)
{
    unsigned char h[5] = {0, (unsigned char)((uint32_t)schema_id >> 24),
                          (unsigned char)((uint32_t)schema_id >> 16),
                          (unsigned char)((uint32_t)schema_id >> 8), (unsigned char)schema_id};
    kc_buf_append(b, h, sizeof(h));
}

void kc_avro_put_long(kc_buf_t *b, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    unsigned char out[10];
    size_t n = 0;
    while (z & ~(uint64_t)0x7f) {
        out[n++] = (unsigned char)((z & 0x7f) | 0x80);
        z >>= 7;
    }
    out[n++] = (unsigned char)z;
    kc_buf_append(b, out, n);
}

void kc_avro_put_str(kc_buf_t *b, const char *s, size_t n)
{
    kc_avro_put_long(b, (int64_t)n);
    if (n)
        kc_buf_append(b, s, n);
}

void kc_avro_put_bool(kc_buf_t *b, int v)
{
    kc_buf_putc(b, v ? 1 : 0);
}

int64_t kc_avro_rd_long(kc_avro_rd_t *r)
{
    uint64_t v = 0;
    if (r->err)
        return 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end)
            break;
        unsigned char c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    }
    r->err = 1;
    return 0;
}

kc_str_t kc_avro_rd_str(kc_avro_rd_t *r)
{
    kc_str_t s = {"", 0};
    int64_t n = kc_avro_rd_long(r);
    if (r->err || n < 0 || n > r->end - r->p) {
        r->err = 1;
        return s;
    }
    s.p = (const char *)r->p;
    s.n = (size_t)n;
    r->p += n;
    return s;
}

int kc_avro_rd_bool(kc_avro_rd_t *r)
{
    if (r->err || r->p >= r->end || *r->p > 1) {
        r->err = 1;
        return 0;
    }
    return *r->p++;
}

int kc_avro_rd_branch(kc_avro_rd_t *r, int nbranches)
{
    int64_t b = kc_avro_rd_long(r);
    if (r->err || b < 0 || b >= nbranches) {
        r->err = 1;
        return 0;
    }
    return (int)b;
}

int64_t kc_avro_rd_block(kc_avro_rd_t *r)
{
    int64_t n = kc_avro_rd_long(r);
    if (n < 0) {
        /* The block's size in bytes follows: unused here, but checked as avro-c's readers
         * (lib/avro.c's validation) check it, so that both refuse the same records. */
        int64_t bytes = kc_avro_rd_long(r);
        if (r->err || n == INT64_MIN || bytes < 0 || bytes > r->end - r->p) {
            r->err = 1;
            return 0;
        }
        n = -n;
    }
    /* Every item of kchat's arrays takes at least one byte. */
    if (r->err || n > r->end - r->p) {
        r->err = 1;
        return 0;
    }
    return n;
}

void kc_avro_skip_strs(kc_avro_rd_t *r)
{
    for (int64_t n; !r->err && (n = kc_avro_rd_block(r)) > 0;)
        for (int64_t i = 0; i < n && !r->err; i++)
            (void)kc_avro_rd_str(r);
}

int kc_avro_open(const kc_schemas_t *s, const void *buf, size_t len, const char *subject,
                 kc_avro_rd_t *r, int *version, char *errstr, size_t errstr_size)
{
    const unsigned char *p = buf;
    if (len > KC_AVRO_MAX_BYTES) {
        kc_strlcpyf(errstr, errstr_size, "record of %zu bytes is larger than %d", len,
                    KC_AVRO_MAX_BYTES);
        return -1;
    }
    if (!p || len < 5) {
        kc_strlcpyf(errstr, errstr_size, "record of %zu bytes is too short for the wire format",
                    len);
        return -1;
    }
    if (p[0] != 0) {
        kc_strlcpyf(errstr, errstr_size, "magic byte is %u, expected 0", p[0]);
        return -1;
    }
    int32_t id = (int32_t)(((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) |
                           ((uint32_t)p[3] << 8) | (uint32_t)p[4]);
    const char *subj;
    if (kc_schemas_describe(s, id, &subj, version) != 0) {
        kc_strlcpyf(errstr, errstr_size, "unknown schema id %d", (int)id);
        return -1;
    }
    if (subject && strcmp(subj, subject) != 0) {
        kc_strlcpyf(errstr, errstr_size, "schema id %d is of %s, not %s", (int)id, subj, subject);
        return -1;
    }
    r->p = p + 5;
    r->end = p + len;
    r->err = 0;
    return 0;
}

int kc_chat_strs_next(kc_chat_strs_t *it, kc_str_t *out)
{
    if (it->rd.err)
        return -1;
    if (it->left == 0) {
        it->left = kc_avro_rd_block(&it->rd);
        if (it->rd.err)
            return -1;
        if (it->left == 0)
            return 0;
    }
    *out = kc_avro_rd_str(&it->rd);
    it->left--;
    return it->rd.err ? -1 : 1;
}

/* Reads an array of strings where it stands: the iterator gets a copy of the reader there
 * (with the count), and r moves past the array. */
static void rd_strs(kc_avro_rd_t *r, kc_chat_strs_t *it)
{
    it->rd = *r;
    it->left = 0;
    it->count = 0;
    for (int64_t n; !r->err && (n = kc_avro_rd_block(r)) > 0;) {
        it->count += (size_t)n;
        for (int64_t i = 0; i < n && !r->err; i++)
            (void)kc_avro_rd_str(r);
    }
}

/* ["null", "long"]: whether it is there, and the value in *v (0 when null). */
static int rd_opt_long(kc_avro_rd_t *r, int64_t *v)
{
    int has = kc_avro_rd_branch(r, 2);
    *v = has ? kc_avro_rd_long(r) : 0;
    return has;
}

static void put_opt_long(kc_buf_t *b, int has, int64_t v)
{
    kc_avro_put_long(b, has ? 1 : 0);
    if (has)
        kc_avro_put_long(b, v);
}

/* ["null", "string"] */
static kc_str_t rd_opt_str(kc_avro_rd_t *r)
{
    kc_str_t none = {NULL, 0};
    return kc_avro_rd_branch(r, 2) ? kc_avro_rd_str(r) : none;
}

static void put_opt_s(kc_buf_t *b, kc_str_t s)
{
    kc_avro_put_long(b, s.p ? 1 : 0);
    if (s.p)
        kc_avro_put_str(b, s.p, s.n);
}

/* ---- Attachments ---- */

#define ATTS_REFUSED 3

static int att_str_ok(kc_str_t s, size_t max, int may_be_empty)
{
    /* no NUL: Postgres keeps the JSON of attachments, and jsonb refuses \u0000 */
    return s.p && (may_be_empty || s.n > 0) && s.n <= max && kc_utf8_valid(s.p, s.n) &&
           !memchr(s.p, 0, s.n);
}

/* One Attachment where r stands; 0, or -1 when a field is out of its bounds. */
static int rd_att(kc_avro_rd_t *r, kc_chat_attachment_t *a)
{
    memset(a, 0, sizeof(*a));
    a->id = kc_avro_rd_str(r);
    a->key = kc_avro_rd_str(r);
    a->name = kc_avro_rd_str(r);
    a->size = kc_avro_rd_long(r);
    a->content_type = kc_avro_rd_str(r);
    int64_t w = 0, h = 0;
    (void)rd_opt_long(r, &w);
    (void)rd_opt_long(r, &h);
    a->thumb_key = rd_opt_str(r);
    if (r->err)
        return -1;
    if (!att_str_ok(a->id, KC_CHAT_ATT_ID_MAX, 0) || !att_str_ok(a->key, KC_CHAT_ATT_KEY_MAX, 0) ||
        !att_str_ok(a->name, KC_CHAT_ATT_NAME_MAX, 0) ||
        !att_str_ok(a->content_type, KC_CHAT_ATT_CTYPE_MAX, 0) || a->size < 0 || w < 0 ||
        w > INT32_MAX || h < 0 || h > INT32_MAX ||
        (a->thumb_key.p && !att_str_ok(a->thumb_key, KC_CHAT_ATT_KEY_MAX, 0)))
        return -1;
    a->width = (int32_t)w;
    a->height = (int32_t)h;
    return 0;
}

/* The attachments array where r stands: its bytes, checked, into *out (r moves past it). */
static void rd_atts(kc_avro_rd_t *r, kc_chat_atts_t *out)
{
    const unsigned char *start = r->p;
    size_t count = 0;
    for (int64_t n; !r->err && (n = kc_avro_rd_block(r)) > 0;) {
        for (int64_t i = 0; i < n && !r->err; i++) {
            kc_chat_attachment_t a;
            if (++count > KC_CHAT_MAX_ATTACHMENTS || rd_att(r, &a) != 0) {
                if (!r->err)
                    r->err = ATTS_REFUSED;
            }
        }
    }
    if (r->err)
        return;
    if (count) {
        out->p = (const char *)start;
        out->n = (size_t)(r->p - start);
    }
    out->count = count;
}

static void put_atts(kc_buf_t *b, kc_chat_atts_t a)
{
    if (a.count && a.n)
        kc_buf_append(b, a.p, a.n);
    else
        kc_avro_put_long(b, 0);
}

void kc_chat_atts_put(kc_buf_t *b, const kc_chat_attachment_t *atts, size_t n)
{
    if (n) {
        kc_avro_put_long(b, (int64_t)n);
        for (size_t i = 0; i < n; i++) {
            const kc_chat_attachment_t *a = &atts[i];
            kc_avro_put_str(b, a->id.p, a->id.n);
            kc_avro_put_str(b, a->key.p, a->key.n);
            kc_avro_put_str(b, a->name.p, a->name.n);
            kc_avro_put_long(b, a->size);
            kc_avro_put_str(b, a->content_type.p, a->content_type.n);
            put_opt_long(b, a->width > 0, a->width);
            put_opt_long(b, a->height > 0, a->height);
            put_opt_s(b, a->thumb_key);
        }
    }
    kc_avro_put_long(b, 0);
}

size_t kc_chat_atts_read(kc_chat_atts_t raw, kc_chat_attachment_t *out)
{
    kc_avro_rd_t r = {(const unsigned char *)raw.p, (const unsigned char *)raw.p + raw.n, 0};
    size_t count = 0;
    if (!raw.p)
        return 0;
    for (int64_t n; !r.err && (n = kc_avro_rd_block(&r)) > 0;)
        for (int64_t i = 0; i < n && !r.err && count < KC_CHAT_MAX_ATTACHMENTS; i++)
            if (rd_att(&r, &out[count]) == 0)
                count++;
    return count;
}

void kc_chat_atts_json(kc_buf_t *b, kc_chat_atts_t raw)
{
    kc_chat_attachment_t a[KC_CHAT_MAX_ATTACHMENTS];
    size_t n = kc_chat_atts_read(raw, a);
    kc_buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        kc_buf_puts(b, i ? ",{\"id\":\"" : "{\"id\":\"");
        kc_buf_json_str(b, a[i].id.p, a[i].id.n);
        kc_buf_puts(b, "\",\"key\":\"");
        kc_buf_json_str(b, a[i].key.p, a[i].key.n);
        kc_buf_puts(b, "\",\"name\":\"");
        kc_buf_json_str(b, a[i].name.p, a[i].name.n);
        kc_buf_printf(b, "\",\"size\":%lld,\"content_type\":\"", (long long)a[i].size);
        kc_buf_json_str(b, a[i].content_type.p, a[i].content_type.n);
        kc_buf_putc(b, '"');
        if (a[i].width > 0 && a[i].height > 0)
            kc_buf_printf(b, ",\"width\":%d,\"height\":%d", (int)a[i].width, (int)a[i].height);
        else
            kc_buf_puts(b, ",\"width\":null,\"height\":null");
        if (a[i].thumb_key.p) {
            kc_buf_puts(b, ",\"thumb_key\":\"");
            kc_buf_json_str(b, a[i].thumb_key.p, a[i].thumb_key.n);
            kc_buf_puts(b, "\"}");
        } else {
            kc_buf_puts(b, ",\"thumb_key\":null}");
        }
    }
    kc_buf_putc(b, ']');
}

/* ---- Delivery ---- */

static void rd_ack(kc_avro_rd_t *r, kc_chat_ack_t *a)
{
    a->sender_id = kc_avro_rd_str(r);
    a->client_msg_id = kc_avro_rd_str(r);
    a->status = kc_avro_rd_str(r);
    a->server_msg_id = rd_opt_str(r);
    a->has_seq = kc_avro_rd_branch(r, 2);
    a->seq_no = a->has_seq ? kc_avro_rd_long(r) : 0;
    a->error_code = rd_opt_str(r);
    a->error_message = rd_opt_str(r);
}

/* The fields of one delivery, as both versions lay them out: convo_id, recipients, event,
 * ack; version 2's items add actor_slots. */
static void rd_item(kc_avro_rd_t *r, kc_chat_item_t *it, int with_slots)
{
    memset(it, 0, sizeof(*it));
    it->convo_id = kc_avro_rd_str(r);
    rd_strs(r, &it->recipients);
    if (kc_avro_rd_branch(r, 2)) {
        kc_str_t ev = kc_avro_rd_str(r);
        it->event = ev.p;
        it->event_len = ev.n;
    }
    it->has_ack = kc_avro_rd_branch(r, 2);
    if (it->has_ack)
        rd_ack(r, &it->ack);
    if (!with_slots)
        return;
    for (int64_t n; !r->err && (n = kc_avro_rd_block(r)) > 0;) {
        for (int64_t i = 0; i < n && !r->err; i++) {
            int64_t s = kc_avro_rd_long(r);
            /* An Avro int: a wider value is not this schema's (avro-c refuses it too). A
             * negative one is no slot: skipped, as are slots past the most there can be. */
            if (s < INT32_MIN || s > INT32_MAX)
                r->err = 1;
            else if (it->nactor_slots < KC_CHAT_MAX_SLOTS && s >= 0)
                it->actor_slots[it->nactor_slots++] = (int32_t)s;
        }
    }
}

int kc_chat_delivery_open(const kc_schemas_t *s, const void *buf, size_t len,
                          kc_chat_delivery_t *d, char *errstr, size_t errstr_size)
{
    memset(d, 0, sizeof(*d));
    if (kc_avro_open(s, buf, len, "chat.deliveries-value", &d->rd, &d->version, errstr,
                     errstr_size) != 0)
        return -1;
    if (d->version < 1 || d->version > 2) {
        kc_strlcpyf(errstr, errstr_size, "Delivery version %d is not known here", d->version);
        return -1;
    }
    int64_t slot = kc_avro_rd_long(&d->rd);
    d->slot = (int32_t)slot;
    /* A version-2 batch leaves the top-level delivery empty: peek at it. */
    kc_avro_rd_t peek = d->rd;
    kc_chat_item_t top;
    rd_item(&peek, &top, 0);
    if (peek.err || slot < INT32_MIN || slot > INT32_MAX) {
        kc_strlcpyf(errstr, errstr_size, "malformed Delivery");
        return -1;
    }
    d->single = d->version == 1 || top.convo_id.n > 0 || top.has_ack || top.event;
    if (!d->single)
        d->rd = peek; /* positioned at items */
    return 0;
}

int kc_chat_delivery_next(kc_chat_delivery_t *d, kc_chat_item_t *it)
{
    if (d->done)
        return 0;
    if (d->rd.err)
        return -1;
    if (d->single) {
        rd_item(&d->rd, it, 0);
        if (d->version >= 2) { /* a single delivery written with version 2: skip its items */
            kc_chat_item_t skip;
            for (int64_t n; !d->rd.err && (n = kc_avro_rd_block(&d->rd)) > 0;)
                for (int64_t i = 0; i < n && !d->rd.err; i++)
                    rd_item(&d->rd, &skip, 1);
        }
        d->done = 1;
        return d->rd.err || d->rd.p != d->rd.end ? -1 : 1;
    }
    if (d->left == 0) {
        d->left = kc_avro_rd_block(&d->rd);
        if (d->left == 0) {
            d->done = 1;
            return d->rd.err || d->rd.p != d->rd.end ? -1 : 0;
        }
    }
    rd_item(&d->rd, it, 1);
    d->left--;
    return d->rd.err ? -1 : 1;
}

void kc_chat_delivery_begin(kc_buf_t *b, int32_t schema_id, int32_t slot)
{
    kc_avro_put_header(b, schema_id);
    kc_avro_put_long(b, slot);
    kc_avro_put_str(b, "", 0); /* convo_id */
    kc_avro_put_long(b, 0);    /* recipients: [] */
    kc_avro_put_long(b, 0);    /* event: null */
    kc_avro_put_long(b, 0);    /* ack: null */
}

void kc_chat_delivery_put(kc_buf_t *b, const char *convo_id, const char *const *recipients,
                          size_t nrecipients, const void *event, size_t event_len,
                          const kc_chat_ack_out_t *ack, const int32_t *actor_slots,
                          size_t nactor_slots)
{
    kc_avro_put_long(b, 1); /* a block of one item: the count need not be known ahead */
    kc_avro_put_str(b, convo_id, strlen(convo_id));
    if (nrecipients) {
        kc_avro_put_long(b, (int64_t)nrecipients);
        for (size_t i = 0; i < nrecipients; i++)
            kc_avro_put_str(b, recipients[i], strlen(recipients[i]));
    }
    kc_avro_put_long(b, 0);
    if (event) {
        kc_avro_put_long(b, 1);
        kc_avro_put_str(b, event, event_len);
    } else {
        kc_avro_put_long(b, 0);
    }
    if (ack) {
        kc_avro_put_long(b, 1);
        kc_avro_put_str(b, ack->sender_id, strlen(ack->sender_id));
        kc_avro_put_str(b, ack->client_msg_id, strlen(ack->client_msg_id));
        kc_avro_put_str(b, ack->status, strlen(ack->status));
        put_opt_s(b, kc_str(ack->server_msg_id));
        if (ack->has_seq) {
            kc_avro_put_long(b, 1);
            kc_avro_put_long(b, ack->seq_no);
        } else {
            kc_avro_put_long(b, 0);
        }
        put_opt_s(b, kc_str(ack->error_code));
        put_opt_s(b, kc_str(ack->error_message));
    } else {
        kc_avro_put_long(b, 0);
    }
    if (nactor_slots) {
        kc_avro_put_long(b, (int64_t)nactor_slots);
        for (size_t i = 0; i < nactor_slots; i++)
            kc_avro_put_long(b, actor_slots[i]);
    }
    kc_avro_put_long(b, 0);
}

void kc_chat_delivery_end(kc_buf_t *b)
{
    kc_avro_put_long(b, 0); /* items end */
}

/* ---- Event ---- */

static const char *const event_kinds[] = {
    "ConversationCreated", "MembersAdded",   "MembersRemoved",      "MessageCreated",
    "MessageEdited",       "MessageDeleted", "ReadMarkerSet",       "CommandRejected",
    "ConversationUpdated", "RoleChanged",    "ReactionChanged",
};

/* How many branches of the body union each version has. */
static int event_branches(int version)
{
    return version == 1 ? 8 : version <= 3 ? 10 : (int)KC_ARRAY_LEN(event_kinds);
}

int kc_chat_reaction_valid(const char *s, size_t n)
{
    if (!s || n == 0 || n > KC_CHAT_MAX_REACTION_BYTES || !kc_utf8_valid(s, n))
        return 0;
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return 0; /* control characters, spaces and NUL */
        if ((c & 0xc0) != 0x80)
            chars++;
        /* U+0080..U+009F (C1 controls), U+00A0 and U+2028/U+2029 separators */
        if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] <= 0xa0)
            return 0;
        if (c == 0xe2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
            ((unsigned char)s[i + 2] == 0xa8 || (unsigned char)s[i + 2] == 0xa9))
            return 0;
    }
    return chars <= KC_CHAT_MAX_REACTION_CHARS;
}

/* ReactionChanged.counts: at most KC_CHAT_MAX_REACTION_KINDS, each count at least 1, which
 * the schema cannot say: such a record is refused with err COUNTS_REFUSED (the processor
 * never writes one). */
#define COUNTS_REFUSED 2
static void rd_counts(kc_avro_rd_t *r, kc_chat_event_t *ev)
{
    for (int64_t n; !r->err && (n = kc_avro_rd_block(r)) > 0;)
        for (int64_t i = 0; i < n && !r->err; i++) {
            kc_str_t e = kc_avro_rd_str(r);
            int64_t v = kc_avro_rd_long(r);
            if (r->err)
                return;
            if (ev->ncounts == KC_CHAT_MAX_REACTION_KINDS || v < 1 || v > INT32_MAX) {
                r->err = COUNTS_REFUSED;
                return;
            }
            ev->counts[ev->ncounts++] = (kc_chat_count_t){e, (int32_t)v};
        }
}

static const char *const role_names[KC_ROLE_N] = {"owner", "admin", "member"};

const char *kc_role_name(kc_role_t r)
{
    return (size_t)r < KC_ROLE_N ? role_names[r] : "member";
}

int kc_role_parse(const char *s, size_t n)
{
    for (int i = 0; s && i < KC_ROLE_N; i++)
        if (strlen(role_names[i]) == n && memcmp(role_names[i], s, n) == 0)
            return i;
    return -1;
}

static kc_role_t rd_role(kc_avro_rd_t *r)
{
    return (kc_role_t)kc_avro_rd_branch(r, KC_ROLE_N); /* an enum: its index, checked */
}


const char *kc_chat_event_kind_name(kc_chat_event_kind_t k)
{
    return (size_t)k < KC_ARRAY_LEN(event_kinds) ? event_kinds[k] : "unknown";
}

int kc_chat_event_decode(const kc_schemas_t *s, const void *buf, size_t len, kc_chat_event_t *ev,
                         char *errstr, size_t errstr_size)
{
    memset(ev, 0, sizeof(*ev));
    kc_avro_rd_t r;
    if (kc_avro_open(s, buf, len, "chat.events-value", &r, &ev->version, errstr, errstr_size))
        return -1;
    if (ev->version < 1 || ev->version > 6) {
        kc_strlcpyf(errstr, errstr_size, "Event version %d is not known here", ev->version);
        return -1;
    }
    ev->event_id = kc_avro_rd_str(&r);
    ev->convo_id = kc_avro_rd_str(&r);
    ev->actor_id = kc_avro_rd_str(&r);
    ev->occurred_at = kc_avro_rd_long(&r);
    ev->command_id = kc_avro_rd_str(&r);
    ev->origin = kc_avro_rd_str(&r);
    ev->kind = (kc_chat_event_kind_t)kc_avro_rd_branch(&r, event_branches(ev->version));
    ev->role = KC_ROLE_MEMBER;
    switch (ev->kind) {
    case KC_EV_CONVERSATION_CREATED:
        ev->title = kc_avro_rd_str(&r);
        rd_strs(&r, &ev->members);
        break;
    case KC_EV_MEMBERS_ADDED: rd_strs(&r, &ev->members); break;
    case KC_EV_MEMBERS_REMOVED:
        rd_strs(&r, &ev->members);
        if (ev->version >= 2) {
            ev->seq_no = kc_avro_rd_long(&r);
            ev->promoted = rd_opt_str(&r);
        }
        break;
    case KC_EV_CONVERSATION_UPDATED:
        ev->title = rd_opt_str(&r);
        ev->topic = rd_opt_str(&r);
        break;
    case KC_EV_ROLE_CHANGED:
        ev->user_id = kc_avro_rd_str(&r);
        ev->role = rd_role(&r);
        break;
    case KC_EV_MESSAGE_CREATED:
        ev->seq_no = kc_avro_rd_long(&r);
        ev->server_msg_id = kc_avro_rd_str(&r);
        ev->client_msg_id = kc_avro_rd_str(&r);
        ev->content = kc_avro_rd_str(&r);
        ev->content_type = kc_avro_rd_str(&r);
        if (ev->version >= 3)
            ev->has_reply_to = rd_opt_long(&r, &ev->reply_to);
        if (ev->version >= 5)
            rd_atts(&r, &ev->attachments);
        break;
    case KC_EV_MESSAGE_EDITED:
        ev->seq_no = kc_avro_rd_long(&r);
        ev->content = kc_avro_rd_str(&r);
        break;
    case KC_EV_MESSAGE_DELETED:
    case KC_EV_READ_MARKER_SET: ev->seq_no = kc_avro_rd_long(&r); break;
    case KC_EV_REACTION_CHANGED:
        ev->seq_no = kc_avro_rd_long(&r);
        ev->emoji = rd_opt_str(&r);
        ev->previous = rd_opt_str(&r);
        rd_counts(&r, ev);
        break;
    case KC_EV_COMMAND_REJECTED:
        ev->reason = kc_avro_rd_str(&r);
        ev->message = kc_avro_rd_str(&r);
        ev->command_type = kc_avro_rd_str(&r);
        ev->client_msg_id = rd_opt_str(&r);
        break;
    }
    if (ev->version >= 6 && !r.err) /* r.err keeps the body's own reason */
        ev->type = kc_avro_rd_str(&r);
    if (r.err == COUNTS_REFUSED) {
        kc_strlcpyf(errstr, errstr_size,
                    "ReactionChanged with more than %d counts, or a count below 1",
                    KC_CHAT_MAX_REACTION_KINDS);
        return -1;
    }
    if (r.err == ATTS_REFUSED) {
        kc_strlcpyf(errstr, errstr_size, "more than %d attachments, or one out of its bounds",
                    KC_CHAT_MAX_ATTACHMENTS);
        return -1;
    }
    if (r.err || r.p != r.end) {
        kc_strlcpyf(errstr, errstr_size, r.err ? "malformed Event" : "bytes left over after "
                                                                     "the Event");
        return -1;
    }
    return 0;
}

static void put_s(kc_buf_t *b, kc_str_t s)
{
    kc_avro_put_str(b, s.p ? s.p : "", s.p ? s.n : 0);
}

void kc_chat_event_encode(kc_buf_t *b, int32_t schema_id, const kc_chat_event_out_t *ev)
{
    kc_avro_put_header(b, schema_id);
    put_s(b, ev->event_id);
    put_s(b, ev->convo_id);
    put_s(b, ev->actor_id);
    kc_avro_put_long(b, ev->occurred_at);
    put_s(b, ev->command_id);
    put_s(b, ev->origin);
    kc_avro_put_long(b, (int64_t)ev->kind);
    switch (ev->kind) {
    case KC_EV_CONVERSATION_CREATED:
        put_s(b, ev->title);
        __attribute__((fallthrough));
    case KC_EV_MEMBERS_ADDED:
    case KC_EV_MEMBERS_REMOVED:
        if (ev->nmembers) {
            kc_avro_put_long(b, (int64_t)ev->nmembers);
            for (size_t i = 0; i < ev->nmembers; i++)
                kc_avro_put_str(b, ev->members[i], strlen(ev->members[i]));
        }
        kc_avro_put_long(b, 0);
        if (ev->kind == KC_EV_MEMBERS_REMOVED) {
            kc_avro_put_long(b, ev->seq_no);
            put_opt_s(b, ev->promoted);
        }
        break;
    case KC_EV_CONVERSATION_UPDATED:
        put_opt_s(b, ev->title);
        put_opt_s(b, ev->topic);
        break;
    case KC_EV_ROLE_CHANGED:
        put_s(b, ev->user_id);
        kc_avro_put_long(b, (int64_t)ev->role);
        break;
    case KC_EV_MESSAGE_CREATED:
        kc_avro_put_long(b, ev->seq_no);
        put_s(b, ev->server_msg_id);
        put_s(b, ev->client_msg_id);
        put_s(b, ev->content);
        put_s(b, ev->content_type);
        put_opt_long(b, ev->has_reply_to, ev->reply_to);
        put_atts(b, ev->attachments);
        break;
    case KC_EV_MESSAGE_EDITED:
        kc_avro_put_long(b, ev->seq_no);
        put_s(b, ev->content);
        break;
    case KC_EV_MESSAGE_DELETED:
    case KC_EV_READ_MARKER_SET: kc_avro_put_long(b, ev->seq_no); break;
    case KC_EV_REACTION_CHANGED:
        kc_avro_put_long(b, ev->seq_no);
        put_opt_s(b, ev->emoji);
        put_opt_s(b, ev->previous);
        if (ev->ncounts) {
            kc_avro_put_long(b, (int64_t)ev->ncounts);
            for (size_t i = 0; i < ev->ncounts; i++) {
                put_s(b, ev->counts[i].emoji);
                kc_avro_put_long(b, ev->counts[i].count);
            }
        }
        kc_avro_put_long(b, 0);
        break;
    case KC_EV_COMMAND_REJECTED:
        put_s(b, ev->reason);
        put_s(b, ev->message);
        put_s(b, ev->command_type);
        if (ev->client_msg_id.p) {
            kc_avro_put_long(b, 1);
            put_s(b, ev->client_msg_id);
        } else {
            kc_avro_put_long(b, 0);
        }
        break;
    }
    if (ev->type.p) {
        put_s(b, ev->type);
    } else {
        const char *type = kc_chat_event_kind_name(ev->kind);
        kc_avro_put_str(b, type, strlen(type));
    }
}

/* ---- Command ---- */

static const char *const command_kinds[] = {
    "SendMessage",   "CreateConversation", "AddMembers",         "RemoveMembers",
    "EditMessage",   "DeleteMessage",      "SetReadMarker",      "UpdateConversation",
    "SetRole",       "SetReaction",
};

static int command_branches(int version)
{
    return version == 1 ? 7 : version <= 3 ? 9 : (int)KC_ARRAY_LEN(command_kinds);
}

const char *kc_chat_command_kind_name(kc_chat_command_kind_t k)
{
    return (size_t)k < KC_ARRAY_LEN(command_kinds) ? command_kinds[k] : "unknown";
}

int kc_chat_command_decode(const kc_schemas_t *s, const void *buf, size_t len,
                           kc_chat_command_t *cmd, char *errstr, size_t errstr_size)
{
    memset(cmd, 0, sizeof(*cmd));
    kc_avro_rd_t r;
    if (kc_avro_open(s, buf, len, NULL, &r, &cmd->version, errstr, errstr_size) != 0)
        return -1;
    const unsigned char *p = buf;
    int32_t id = (int32_t)(((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) |
                           ((uint32_t)p[3] << 8) | (uint32_t)p[4]);
    const char *subject;
    int version;
    if (kc_schemas_describe(s, id, &subject, &version) != 0 ||
        strcmp(subject, "chat.commands-value") != 0) {
        kc_strlcpyf(errstr, errstr_size, "schema id %d is %s, not a command", (int)id, subject);
        return -1;
    }
    if (cmd->version < 1 || cmd->version > 5) {
        kc_strlcpyf(errstr, errstr_size, "Command version %d is not known here", cmd->version);
        return -1;
    }
    cmd->command_id = kc_avro_rd_str(&r);
    cmd->convo_id = kc_avro_rd_str(&r);
    cmd->sender_id = kc_avro_rd_str(&r);
    cmd->issued_at = kc_avro_rd_long(&r);
    cmd->origin = kc_avro_rd_str(&r);
    cmd->kind = (kc_chat_command_kind_t)kc_avro_rd_branch(&r, command_branches(cmd->version));
    cmd->role = KC_ROLE_MEMBER;
    switch (cmd->kind) {
    case KC_CMD_UPDATE_CONVERSATION:
        cmd->title = rd_opt_str(&r);
        cmd->topic = rd_opt_str(&r);
        break;
    case KC_CMD_SET_ROLE:
        cmd->user_id = kc_avro_rd_str(&r);
        cmd->role = rd_role(&r);
        break;
    case KC_CMD_SEND_MESSAGE:
        cmd->client_msg_id = kc_avro_rd_str(&r);
        cmd->content = kc_avro_rd_str(&r);
        cmd->content_type = kc_avro_rd_str(&r);
        if (cmd->version >= 3)
            cmd->has_reply_to = rd_opt_long(&r, &cmd->reply_to);
        if (cmd->version >= 5)
            rd_atts(&r, &cmd->attachments);
        break;
    case KC_CMD_CREATE_CONVERSATION:
        cmd->title = kc_avro_rd_str(&r);
        __attribute__((fallthrough));
    case KC_CMD_ADD_MEMBERS:
    case KC_CMD_REMOVE_MEMBERS: rd_strs(&r, &cmd->members); break;
    case KC_CMD_EDIT_MESSAGE:
        cmd->seq_no = kc_avro_rd_long(&r);
        cmd->content = kc_avro_rd_str(&r);
        break;
    case KC_CMD_DELETE_MESSAGE:
    case KC_CMD_SET_READ_MARKER: cmd->seq_no = kc_avro_rd_long(&r); break;
    case KC_CMD_SET_REACTION:
        cmd->seq_no = kc_avro_rd_long(&r);
        cmd->emoji = rd_opt_str(&r);
        break;
    }
    if (r.err == ATTS_REFUSED) {
        kc_strlcpyf(errstr, errstr_size, "more than %d attachments, or one out of its bounds",
                    KC_CHAT_MAX_ATTACHMENTS);
        return -1;
    }
    if (r.err || r.p != r.end) {
        kc_strlcpyf(errstr, errstr_size,
                    r.err ? "malformed Command" : "bytes left over after the Command");
        return -1;
    }
    return 0;
}

void kc_chat_command_encode(kc_buf_t *b, int32_t schema_id, const kc_chat_command_t *cmd)
{
    kc_avro_put_header(b, schema_id);
    put_s(b, cmd->command_id);
    put_s(b, cmd->convo_id);
    put_s(b, cmd->sender_id);
    kc_avro_put_long(b, cmd->issued_at);
    put_s(b, cmd->origin);
    kc_avro_put_long(b, (int64_t)cmd->kind);
    switch (cmd->kind) {
    case KC_CMD_SEND_MESSAGE:
        put_s(b, cmd->client_msg_id);
        put_s(b, cmd->content);
        put_s(b, cmd->content_type.p ? cmd->content_type : (kc_str_t){"text/plain", 10});
        put_opt_long(b, cmd->has_reply_to, cmd->reply_to);
        put_atts(b, cmd->attachments);
        break;
    case KC_CMD_CREATE_CONVERSATION:
        put_s(b, cmd->title);
        __attribute__((fallthrough));
    case KC_CMD_ADD_MEMBERS:
    case KC_CMD_REMOVE_MEMBERS:
        if (cmd->nmembers_out) {
            kc_avro_put_long(b, (int64_t)cmd->nmembers_out);
            for (size_t i = 0; i < cmd->nmembers_out; i++)
                kc_avro_put_str(b, cmd->members_out[i], strlen(cmd->members_out[i]));
        }
        kc_avro_put_long(b, 0);
        break;
    case KC_CMD_EDIT_MESSAGE:
        kc_avro_put_long(b, cmd->seq_no);
        put_s(b, cmd->content);
        break;
    case KC_CMD_DELETE_MESSAGE:
    case KC_CMD_SET_READ_MARKER: kc_avro_put_long(b, cmd->seq_no); break;
    case KC_CMD_UPDATE_CONVERSATION:
        put_opt_s(b, cmd->title);
        put_opt_s(b, cmd->topic);
        break;
    case KC_CMD_SET_ROLE:
        put_s(b, cmd->user_id);
        kc_avro_put_long(b, (int64_t)cmd->role);
        break;
    case KC_CMD_SET_REACTION:
        kc_avro_put_long(b, cmd->seq_no);
        put_opt_s(b, cmd->emoji);
        break;
    }
}
