/* throttle.c - client addresses, the fair queue of password work, rate-limited logs. */
#include "throttle.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/util.h"

/* ---- the client's address ---- */

/* Parses n bytes of text as an IPv4 or IPv6 address. 0, or -1. */
static int parse_addr(const char *text, size_t n, int *family, unsigned char bytes[16])
{
    char buf[KC_HTTP_PEER_MAX];
    while (n && *text == ' ') {
        text++;
        n--;
    }
    while (n && text[n - 1] == ' ')
        n--;
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    memset(bytes, 0, 16);
    if (inet_pton(AF_INET, buf, bytes) == 1)
        *family = AF_INET;
    else if (inet_pton(AF_INET6, buf, bytes) == 1)
        *family = AF_INET6;
    else
        return -1;
    return 0;
}

int api_addrset_parse(api_addrset_t *s, const char *list, char *err, size_t errlen)
{
    s->n = 0;
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (s->n == API_ADDRSET_MAX) {
            kc_strlcpyf(err, errlen, "at most %d addresses", API_ADDRSET_MAX);
            return -1;
        }
        if (parse_addr(p, n, &s->a[s->n].family, s->a[s->n].bytes) != 0) {
            int shown = (int)(n > 64 ? 64 : n);
            kc_strlcpyf(err, errlen, "'%.*s' is not an IPv4 or IPv6 address", shown, p);
            return -1;
        }
        s->n++;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

static int set_has(const api_addrset_t *s, int family, const unsigned char bytes[16])
{
    for (size_t i = 0; i < s->n; i++)
        if (s->a[i].family == family && memcmp(s->a[i].bytes, bytes, 16) == 0)
            return 1;
    return 0;
}

int api_addrset_has(const api_addrset_t *s, const char *addr)
{
    int family;
    unsigned char bytes[16];
    return parse_addr(addr, strlen(addr), &family, bytes) == 0 && set_has(s, family, bytes);
}

/* Writes the address of bytes as canonical text. */
static void addr_text(int family, const unsigned char bytes[16], char out[KC_HTTP_PEER_MAX])
{
    if (!inet_ntop(family, bytes, out, KC_HTTP_PEER_MAX))
        out[0] = '\0';
}

size_t api_addrset_texts(const api_addrset_t *s, char (*out)[KC_HTTP_PEER_MAX], size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n && n < max; i++) {
        addr_text(s->a[i].family, s->a[i].bytes, out[n]);
        if (out[n][0])
            n++;
    }
    return n;
}

int api_client_addr(const char *peer, const char *xff, const api_addrset_t *trusted,
                    char out[KC_HTTP_PEER_MAX])
{
    (void)kc_strlcpyf(out, KC_HTTP_PEER_MAX, "%s", peer);
    if (!api_addrset_has(trusted, peer))
        return 0;
    if (!xff)
        return 1;
    /* right to left: each hop that is a trusted proxy tells who connected to it */
    const char *end = xff + strlen(xff);
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        int family;
        unsigned char bytes[16];
        if (parse_addr(start, (size_t)(end - start), &family, bytes) != 0)
            return api_addrset_has(trusted, out);
        addr_text(family, bytes, out);
        if (!set_has(trusted, family, bytes))
            return 0;
        end = start > xff ? start - 1 : start;
    }
    return 1;
}

/* ---- the fair queue ---- */

/* The jobs of one address: its FIFO of waiting ones, and its place in the ring of addresses
 * with jobs waiting. */
struct api_fq_flow {
    char address[KC_HTTP_PEER_MAX];
    int jobs; /* queued or running */
    api_fq_job_t *head, *tail;
    api_fq_flow_t *rprev, *rnext; /* in the ring while head != NULL */
};

struct api_fq {
    int max_running, max_queued, per_address, per_account;
    int running, queued;
    kc_map_t *flows;    /* address -> api_fq_flow_t */
    kc_map_t *accounts; /* account -> int count of jobs queued or running */
    api_fq_flow_t *ring; /* the flow served next */
};

api_fq_t *api_fq_new(int max_running, int max_queued, int per_address, int per_account)
{
    api_fq_t *q = kc_xcalloc(1, sizeof(*q));
    q->max_running = max_running;
    q->max_queued = max_queued;
    q->per_address = per_address;
    q->per_account = per_account;
    q->flows = kc_map_new();
    q->accounts = kc_map_new();
    return q;
}

void api_fq_destroy(api_fq_t *q)
{
    if (!q)
        return;
    kc_map_destroy(q->flows, free);
    kc_map_destroy(q->accounts, free);
    free(q);
}

static void ring_add(api_fq_t *q, api_fq_flow_t *f)
{
    if (!q->ring) {
        f->rprev = f->rnext = f;
        q->ring = f;
        return;
    }
    /* last in the round: just before the one served next */
    f->rnext = q->ring;
    f->rprev = q->ring->rprev;
    f->rprev->rnext = f;
    q->ring->rprev = f;
}

static void ring_remove(api_fq_t *q, api_fq_flow_t *f)
{
    if (f->rnext == f) {
        q->ring = NULL;
    } else {
        f->rprev->rnext = f->rnext;
        f->rnext->rprev = f->rprev;
        if (q->ring == f)
            q->ring = f->rnext;
    }
    f->rprev = f->rnext = NULL;
}

api_fq_status_t api_fq_push(api_fq_t *q, api_fq_job_t *job, const char *address,
                            int address_exempt, const char *account)
{
    size_t alen = strlen(account), plen = strlen(address);
    if (alen > API_FQ_KEY_MAX || plen >= KC_HTTP_PEER_MAX)
        return API_FQ_ACCOUNT;
    api_fq_flow_t *f = kc_map_get(q->flows, address, plen);
    int *acct = kc_map_get(q->accounts, account, alen);
    if (f && f->jobs >= q->per_address && !address_exempt)
        return API_FQ_ADDRESS;
    if (acct && *acct >= q->per_account)
        return API_FQ_ACCOUNT;
    /* the queue is empty whenever a slot is free (every push is followed by api_fq_next) */
    if (q->running >= q->max_running && q->queued >= q->max_queued)
        return API_FQ_FULL;
    if (!f) {
        f = kc_xcalloc(1, sizeof(*f));
        memcpy(f->address, address, plen + 1);
        (void)kc_map_put(q->flows, address, plen, f);
    }
    if (!acct) {
        acct = kc_xcalloc(1, sizeof(*acct));
        (void)kc_map_put(q->accounts, account, alen, acct);
    }
    f->jobs++;
    (*acct)++;
    memcpy(job->account, account, alen + 1);
    job->flow = f;
    job->running = 0;
    job->next = NULL;
    if (f->tail)
        f->tail->next = job;
    else
        f->head = job;
    f->tail = job;
    if (f->head == job)
        ring_add(q, f);
    q->queued++;
    return API_FQ_OK;
}

/* Unlinks the head of the flow served next and moves the round on. */
static api_fq_job_t *pop(api_fq_t *q)
{
    api_fq_flow_t *f = q->ring;
    if (!f)
        return NULL;
    api_fq_job_t *job = f->head;
    f->head = job->next;
    if (!f->head) {
        f->tail = NULL;
        ring_remove(q, f);
    } else {
        q->ring = f->rnext;
    }
    job->next = NULL;
    q->queued--;
    return job;
}

api_fq_job_t *api_fq_next(api_fq_t *q)
{
    if (q->running >= q->max_running)
        return NULL;
    api_fq_job_t *job = pop(q);
    if (job) {
        job->running = 1;
        q->running++;
    }
    return job;
}

/* Drops job's counts of its address and account. */
static void release(api_fq_t *q, api_fq_job_t *job)
{
    api_fq_flow_t *f = job->flow;
    if (--f->jobs == 0 && !f->head)
        free(kc_map_remove(q->flows, f->address, strlen(f->address)));
    size_t alen = strlen(job->account);
    int *acct = kc_map_get(q->accounts, job->account, alen);
    if (acct && --*acct == 0)
        free(kc_map_remove(q->accounts, job->account, alen));
    job->flow = NULL;
}

api_fq_job_t *api_fq_take(api_fq_t *q)
{
    api_fq_job_t *job = pop(q);
    if (job)
        release(q, job);
    return job;
}

void api_fq_done(api_fq_t *q, api_fq_job_t *job)
{
    if (!job->running)
        return;
    job->running = 0;
    q->running--;
    release(q, job);
}

int api_fq_running(const api_fq_t *q)
{
    return q->running;
}

int api_fq_queued(const api_fq_t *q)
{
    return q->queued;
}

/* ---- rate-limited logging ---- */

