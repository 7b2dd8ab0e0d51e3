/* decide.c - the notifier's pure decisions (decide.h). */
#include "decide.h"

#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "kchat/util.h"

int nt_content_parse(const char *s)
{
    if (strcmp(s, "preview") == 0)
        return NT_CONTENT_PREVIEW;
    if (strcmp(s, "sender") == 0)
        return NT_CONTENT_SENDER;
    if (strcmp(s, "none") == 0)
        return NT_CONTENT_NONE;
    return -1;
}

/* A byte that may be part of a username as far as a mention goes: ASCII letters, digits,
 * '_', '.', '-', and every byte of a multi-byte character. */
static int name_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-' || c >= 0x80;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

int nt_mentions(const char *text, size_t len, const char *username)
{
    size_t ul = strlen(username);
    if (ul == 0 || len < ul + 1)
        return 0;
    const unsigned char *t = (const unsigned char *)text, *u = (const unsigned char *)username;
    for (size_t i = 0; i + ul + 1 <= len; i++) {
        if (t[i] != '@' || (i > 0 && (name_byte(t[i - 1]) || t[i - 1] == '@')))
            continue;
        size_t k = 0;
        while (k < ul && lower(t[i + 1 + k]) == lower(u[k]))
            k++;
        if (k < ul)
            continue;
        size_t end = i + 1 + ul;
        /* a name may end in '.' or '-' of the sentence ("@ann." or "@ann-"): a following
         * punctuation mark is allowed when nothing of a name comes after it */
        if (end == len || !name_byte(t[end]))
            return 1;
        if ((t[end] == '.' || t[end] == '-') && (end + 1 == len || !name_byte(t[end + 1])))
            return 1;
    }
    return 0;
}

size_t nt_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    /* back off the continuation bytes of a character cut in two */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* "ann", "ann and bob", "ann, bob and cy", "ann, bob and 3 others" */
static void names(kc_buf_t *b, const nt_note_t *n)
{
    size_t k = n->nsenders;
    if (k == 0) {
        kc_buf_puts(b, n->last_sender);
        return;
    }
    if (k > 3) {
        kc_buf_printf(b, "%s, %s and %zu others", n->senders[0], n->senders[1], k - 2);
        return;
    }
    for (size_t i = 0; i < k; i++) {
        if (i > 0)
            kc_buf_puts(b, i + 1 == k ? " and " : ", ");
        kc_buf_puts(b, n->senders[i]);
    }
}

/* The notification's title and body as the setting allows. */
static void words(const nt_note_t *n, nt_content_t c, kc_buf_t *title, kc_buf_t *body)
{
    int direct = kc_id_is_direct(n->convo_id, strlen(n->convo_id));
    if (c == NT_CONTENT_NONE) {
        kc_buf_puts(title, "kchat");
        kc_buf_puts(body, n->count > 1 ? "New messages" : "New message");
        return;
    }
    if (n->title && *n->title && !direct)
        kc_buf_puts(title, n->title);
    else
        kc_buf_puts(title, n->last_sender);

    const char *text = n->last_content ? n->last_content : "";
    if (n->count > 1) {
        kc_buf_printf(body, "%lld new messages from ", (long long)n->count);
        names(body, n);
        if (c == NT_CONTENT_PREVIEW && *text) {
            kc_buf_puts(body, "\n");
            kc_buf_printf(body, "%s: ", n->last_sender);
            kc_buf_append(body, text, nt_utf8_cut(text, strlen(text), NT_TEXT_MAX));
        }
        return;
    }
    if (c == NT_CONTENT_SENDER) {
        kc_buf_printf(body, n->mention ? "%s mentioned you" : "New message from %s",
                      n->last_sender);
        return;
    }
    /* the sender is the title of a direct conversation: the text alone there */
    if (!direct)
        kc_buf_printf(body, "%s: ", n->last_sender);
    if (*text)
        kc_buf_append(body, text, nt_utf8_cut(text, strlen(text), NT_TEXT_MAX));
    else
        kc_buf_puts(body, "sent a file");
}

static void payload_fields(kc_buf_t *out, const nt_note_t *n, nt_content_t c)
{
    kc_buf_t title = {0}, body = {0};
    words(n, c, &title, &body);
    kc_buf_puts(out, "\"convo_id\":");
    kc_buf_json_qstr(out, n->convo_id, strlen(n->convo_id));
    kc_buf_puts(out, ",\"title\":");
    kc_buf_json_qstr(out, title.data ? title.data : "", title.len);
    kc_buf_puts(out, ",\"body\":");
    kc_buf_json_qstr(out, body.data ? body.data : "", body.len);
    kc_buf_printf(out, ",\"count\":%lld,\"first_seq\":%lld,\"last_seq\":%lld", (long long)n->count,
                  (long long)n->first_seq, (long long)n->last_seq);
    if (c != NT_CONTENT_NONE) {
        kc_buf_puts(out, ",\"sender\":");
        kc_buf_json_qstr(out, n->last_sender, strlen(n->last_sender));
    }
    kc_buf_printf(out, ",\"mention\":%s,\"url\":\"/c/", n->mention ? "true" : "false");
    /* ids are [A-Za-z0-9_-] (kc_id_valid): nothing to escape in a path or a JSON string */
    kc_buf_puts(out, n->convo_id);
    kc_buf_printf(out, "/m/%lld\",\"tag\":\"convo:%s\"", (long long)n->first_seq, n->convo_id);
    kc_buf_free(&title);
    kc_buf_free(&body);
}

void nt_push_payload(const nt_note_t *n, nt_content_t c, kc_buf_t *out)
{
    kc_buf_puts(out, "{\"type\":\"message\",");
    payload_fields(out, n, c);
    kc_buf_putc(out, '}');
}

void nt_webhook_payload(const nt_note_t *n, nt_content_t c, int64_t now_ms, kc_buf_t *out)
{
    char iso[32];
    kc_iso_ms(now_ms, iso);
    kc_buf_printf(out, "{\"type\":\"message.notification\",\"timestamp\":\"%s\",\"data\":{", iso);
    kc_buf_puts(out, "\"user_id\":");
    kc_buf_json_qstr(out, n->user_id, strlen(n->user_id));
    kc_buf_putc(out, ',');
    payload_fields(out, n, c);
    if (c != NT_CONTENT_NONE) {
        kc_buf_puts(out, ",\"senders\":[");
        for (size_t i = 0; i < n->nsenders; i++) {
            if (i)
                kc_buf_putc(out, ',');
            kc_buf_json_qstr(out, n->senders[i], strlen(n->senders[i]));
        }
        kc_buf_putc(out, ']');
    }
    kc_buf_puts(out, "}}");
}

static void sha256_parts(unsigned char h[crypto_hash_sha256_BYTES], const char *const *parts,
                         size_t n)
{
    crypto_hash_sha256_state st;
    (void)crypto_hash_sha256_init(&st);
    for (size_t i = 0; i < n; i++) {
        /* each part with its terminating NUL, so ("ab","c") and ("a","bc") differ */
        (void)crypto_hash_sha256_update(&st, (const unsigned char *)parts[i],
                                        strlen(parts[i]) + 1);
    }
    (void)crypto_hash_sha256_final(&st, h);
}

void nt_msg_id(const char *user_id, const char *convo_id, int64_t first_seq, char out[37])
{
    char seq[24];
    (void)kc_strlcpyf(seq, sizeof(seq), "%lld", (long long)first_seq);
    const char *parts[] = {"kchat-notification", user_id, convo_id, seq};
    unsigned char h[crypto_hash_sha256_BYTES];
    sha256_parts(h, parts, 4);
    memcpy(out, "msg_", 4);
    (void)sodium_bin2hex(out + 4, 33, h, 16);
}

void nt_topic(const char *convo_id, char out[33])
{
    const char *parts[] = {"kchat-topic", convo_id};
    unsigned char h[crypto_hash_sha256_BYTES];
    sha256_parts(h, parts, 2);
    /* 24 bytes are 32 characters of base64url without padding */
    (void)sodium_bin2base64(out, 33, h, 24, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int nt_origin(const char *url, char *out, size_t size)
{
    size_t skip;
    if (strncasecmp(url, "https://", 8) == 0)
        skip = 8;
    else if (strncasecmp(url, "http://", 7) == 0)
        skip = 7;
    else
        return -1;
    size_t end = skip;
    while (url[end] && url[end] != '/' && url[end] != '?' && url[end] != '#')
        end++;
    if (end == skip || end >= size)
        return -1;
    for (size_t i = 0; i < end; i++) {
        unsigned char ch = (unsigned char)url[i];
        if (ch <= ' ' || ch == 0x7f || ch == '@' || ch == '\\')
            return -1;
        out[i] = (char)lower(ch);
    }
    out[end] = '\0';
    return 0;
}

int64_t nt_retry_ms(int attempts, long long retry_after_s, int64_t min_ms, int64_t max_ms,
                    double r)
{
    if (retry_after_s >= 0) {
        int64_t ms = retry_after_s > max_ms / 1000 ? max_ms : (int64_t)retry_after_s * 1000;
        return ms > min_ms ? ms : min_ms;
    }
    int64_t cap = min_ms;
    for (int i = 1; i < attempts && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    if (r < 0)
        r = 0;
    if (r >= 1)
        r = 0.999999;
    return min_ms + (int64_t)((double)(cap - min_ms) * r);
}

const char *const nt_status_names[NT_STATUS_CLASSES] = {"2xx", "404", "410", "429",
                                                         "4xx", "5xx", "none", "other"};

int nt_status_class(long st)
{
    if (st >= 200 && st < 300)
        return 0;
    if (st == 404)
        return 1;
    if (st == 410)
        return 2;
    if (st == 429)
        return 3;
    if (st >= 400 && st < 500)
        return 4;
    if (st >= 500 && st < 600)
        return 5;
    if (st == 0)
        return 6;
    return 7;
}
