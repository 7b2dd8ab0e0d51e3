/* changelog.c - restoring a partition's state from the compacted state topic. */
#include "changelog.h"

#include <stdlib.h>
#include <string.h>

#include "kchat/log.h"
#include "kchat/util.h"

void proc_key_convo(kc_buf_t *key, const char *convo_id)
{
    kc_buf_reset(key);
    kc_buf_putc(key, 'c');
    kc_buf_puts(key, convo_id);
}

void proc_key_dedupe(kc_buf_t *key, const unsigned char hash[PROC_DEDUPE_KEY_BYTES])
{
    kc_buf_reset(key);
    kc_buf_putc(key, 'd');
    kc_buf_append(key, hash, PROC_DEDUPE_KEY_BYTES);
}

/* Applies one changelog record; a record it cannot read is logged and skipped (it can only
 * come from a bug, and skipping it loses less than stopping). */
static void apply_record(proc_part_t *p, kc_schemas_t *s, const rd_kafka_message_t *m)
{
    const char *key = m->key;
    if (m->key_len < 2 || (key[0] != 'c' && key[0] != 'd') ||
        (key[0] == 'd' && m->key_len != 1 + PROC_DEDUPE_KEY_BYTES)) {
        kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_INT("partition", m->partition), KC_INT("offset", m->offset)),
                  "state record with a bad key skipped");
        return;
    }
    if (!m->payload) {
        proc_part_forget(p, key + 1, m->key_len - 1, key[0] == 'c');
        return;
    }
    kc_avro_msg_t msg;
    char err[256];
    avro_value_t b;
    const char *bname;
    if (kc_avro_decode(s, m->payload, m->len, &msg, err, sizeof(err)) != 0) {
        kc_log_kv(KC_LOG_ERROR, KC_FIELDS(KC_INT("partition", m->partition), KC_INT("offset", m->offset)),
                  "state record skipped: %s", err);
        return;
    }
    if (kc_avro_get_branch(&msg.value, "state", &bname, &b) != 0) {
        kc_avro_msg_free(&msg);
        return;
    }
    int64_t seq = 0, created = 0;
    if (key[0] == 'c' && strcmp(bname, "ConvoState") == 0 &&
        kc_avro_get_long(s, &b, "last_seq", &seq) == 0) {
        avro_value_t arr;
        size_t n = 0;
        if (kc_avro_get_array(&b, "members", &arr, &n) == 0) {
            const char **ids = kc_xcalloc(n ? n : 1, sizeof(char *));
            size_t *lens = kc_xcalloc(n ? n : 1, sizeof(size_t));
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (kc_avro_array_str(&arr, i, &ids[k], &lens[k]) == 0)
                    k++;
            proc_part_restore_convo(p, key + 1, m->key_len - 1, seq, ids, lens, k);
            free(ids);
            free(lens);
        }
    } else if (key[0] == 'd' && strcmp(bname, "DedupeEntry") == 0 &&
               kc_avro_get_long(s, &b, "seq_no", &seq) == 0 &&
               kc_avro_get_long(s, &b, "created_at", &created) == 0) {
        /* Version-1 entries lack the author: their messages stay deduplicated but can no
         * longer be edited (the defaults are empty). */
        const char *convo = "", *author = "";
        size_t clen, alen;
        avro_value_t flag;
        int deleted = 0;
        if (kc_avro_get_str(s, &b, "convo_id", &convo, &clen) != 0 ||
            kc_avro_get_str(s, &b, "sender_id", &author, &alen) != 0)
            convo = author = "";
        if (avro_value_get_by_name(&b, "deleted", &flag, NULL) == 0 &&
            avro_value_get_boolean(&flag, &deleted) != 0)
            deleted = 0;
        proc_part_add_dedupe(p, (const unsigned char *)key + 1, seq, created, convo, author,
                             deleted);
    }
    kc_avro_msg_free(&msg);
}

int proc_restore(rd_kafka_t *rk, kc_schemas_t *s, const char *topic, const int32_t *partitions,
                 int n, proc_part_t **out, int timeout_ms, proc_restore_stats_t *stats,
                 char *errstr, size_t errstr_size)
{
    uint64_t t0 = kc_mono_ns();
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++) {
        out[i] = proc_part_new(partitions[i]);
        rd_kafka_topic_partition_list_add(l, topic, partitions[i])->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_resp_err_t err = n ? rd_kafka_assign(rk, l) : RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(l);
    int left = err ? -1 : n;
    if (err)
        kc_strlcpyf(errstr, errstr_size, "cannot read %s: %s", topic, rd_kafka_err2str(err));
    long long records = 0;
    while (left > 0) {
        if ((kc_mono_ns() - t0) / 1000000 > (uint64_t)timeout_ms) {
            kc_strlcpyf(errstr, errstr_size, "restoring %s took longer than %d ms", topic,
                        timeout_ms);
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        int i = 0;
        while (i < n && partitions[i] != m->partition)
            i++;
        if (i == n) {
            /* not ours */
        } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            left--;
        } else if (m->err) {
            kc_log_warn("restore: %s", rd_kafka_message_errstr(m));
        } else {
            apply_record(out[i], s, m);
            records++;
        }
        rd_kafka_message_destroy(m);
    }
    if (n && rd_kafka_assign(rk, NULL) != RD_KAFKA_RESP_ERR_NO_ERROR)
        kc_log_warn("restore: unassign failed");
    if (left != 0) {
        for (int i = 0; i < n; i++) {
            proc_part_destroy(out[i]);
            out[i] = NULL;
        }
        return -1;
    }
    stats->records = records;
    stats->seconds = (double)(kc_mono_ns() - t0) / 1e9;
    return 0;
}
