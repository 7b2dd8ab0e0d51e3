/* throttle.h - the API's defences of password hashing, as pure logic (no loop, no Redis):
 *
 *   who asks     api_client_addr: the client's address, the peer's own or, when the peer is a
 *                trusted proxy, the right-most address of X-Forwarded-For that is not one
 *   fair queue   api_fq_t: password hashes wait in a bounded queue and start round-robin
 *                across client addresses, so an address that floods delays itself, not the
 *                others; each address and each account may have only a few jobs queued or
 *                running at once
 *
 * The guessing throttle shared by every API replica lives in Redis (auth.c runs its scripts);
 * its key names are here, in one place. The keys hold a hash {n: failures, until: ms since
 * the epoch before which the next attempt is refused} and expire by themselves:
 *   API_THROTTLE_PAIR <account>:<address>  failures of one account from one address
 *   API_THROTTLE_ADDR <address>            failures from one address, any account
 *   API_THROTTLE_ACCOUNT <account>         failures of one account from any address, and
 *                                          "next", the pacing of its attempts
 *   API_THROTTLE_REGISTER <address>        a plain counter: registrations this hour
 *   API_THROTTLE_LOOKUP <user id>          a plain counter: people lookups this minute
 * Usernames hold no ':', so <account>:<address> is unambiguous.
 */
#ifndef KCHAT_API_THROTTLE_H
#define KCHAT_API_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

#include "kchat/httpd.h"
#include "kchat/map.h"

#define API_THROTTLE_PREFIX "kchat:throttle:"
#define API_THROTTLE_PAIR API_THROTTLE_PREFIX "pair:"
#define API_THROTTLE_ADDR API_THROTTLE_PREFIX "addr:"
#define API_THROTTLE_ACCOUNT API_THROTTLE_PREFIX "account:"
#define API_THROTTLE_REGISTER API_THROTTLE_PREFIX "register:"
#define API_THROTTLE_LOOKUP API_THROTTLE_PREFIX "lookup:"

/* ---- the client's address ---- */

#define API_ADDRSET_MAX 32

/* A set of IPv4/IPv6 addresses, compared in binary ("::1" and "0::1" are one address). */
typedef struct {
    size_t n;
    struct {
        int family;
        unsigned char bytes[16];
    } a[API_ADDRSET_MAX];
} api_addrset_t;

/* Parses a comma-separated list of addresses (spaces around them allowed; "" is the empty
 * set). 0, or -1 with err naming the bad entry. */
int api_addrset_parse(api_addrset_t *s, const char *list, char *err, size_t errlen);
/* 1 when addr (text) parses and is in s. */
int api_addrset_has(const api_addrset_t *s, const char *addr);
/* s's addresses as inet_ntop writes them, at most max; returns how many. */
size_t api_addrset_texts(const api_addrset_t *s, char (*out)[KC_HTTP_PEER_MAX], size_t max);

/* The client's address into out (KC_HTTP_PEER_MAX bytes): peer itself, unless peer is one of
 * trusted and xff (the X-Forwarded-For header, may be NULL) names addresses: then the
 * right-most of them that is not itself a trusted proxy (the left-most if all are). An entry
 * that is not an address ends the walk at the last good one (or peer). Returns 1 when the
 * client found is itself a trusted proxy (a request of the infrastructure's own, such as a
 * local tool on the API's host), else 0. */
int api_client_addr(const char *peer, const char *xff, const api_addrset_t *trusted,
                     char out[KC_HTTP_PEER_MAX]);

/* ---- the fair queue of password work ---- */

#define API_FQ_KEY_MAX 256 /* bytes of an account key: a username's key, which case folding
                              can make longer than the name (API_USERNAME_KEY_MAX) */

typedef struct api_fq api_fq_t;
typedef struct api_fq_flow api_fq_flow_t;

/* One job, embedded in the caller's state; the queue only links it. */
typedef struct api_fq_job {
    struct api_fq_job *next; /* in its flow's FIFO */
    api_fq_flow_t *flow;
    int running;
    char account[API_FQ_KEY_MAX + 1];
} api_fq_job_t;

typedef enum {
    API_FQ_OK = 0,
    API_FQ_FULL,    /* the queue holds max_queued jobs and every slot runs: 503 */
    API_FQ_ADDRESS, /* the address has per_address jobs queued or running: 429 */
    API_FQ_ACCOUNT, /* the account has per_account jobs queued or running: 429 */
} api_fq_status_t;

/* At most max_running jobs run at once, max_queued more wait (0: none waits). */
api_fq_t *api_fq_new(int max_running, int max_queued, int per_address, int per_account);
/* Jobs still in it are forgotten (they belong to their callers). NULL is a no-op. */
void api_fq_destroy(api_fq_t *q);
/* Queues job for address and account (account longer than API_FQ_KEY_MAX: API_FQ_ACCOUNT);
 * per_address is not applied when address_exempt. A job refused is not linked. Call
 * api_fq_next afterwards to start what may start. */
api_fq_status_t api_fq_push(api_fq_t *q, api_fq_job_t *job, const char *address,
                            int address_exempt, const char *account);
/* The next job to start (it now holds a running slot), round-robin across addresses; NULL
 * when every slot runs or nothing waits. */
api_fq_job_t *api_fq_next(api_fq_t *q);
/* A waiting job taken out without running (to refuse it, e.g. when stopping); NULL if none. */
api_fq_job_t *api_fq_take(api_fq_t *q);
/* A job returned by api_fq_next has finished: its slot and its counts are released. */
void api_fq_done(api_fq_t *q, api_fq_job_t *job);
int api_fq_running(const api_fq_t *q);
int api_fq_queued(const api_fq_t *q);


#endif
