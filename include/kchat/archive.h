/* archive.h - the archive of kchat's topics in the object store, shared by kchat-archiver
 * (which writes it) and `kchatctl restore` (which replays it).
 *
 * One object per topic partition and offset range:
 *
 *   <prefix><topic>/<partition, 5 digits>/<first offset, 20 digits>-<last offset, 20 digits>.avro
 *
 * e.g. archive/chat.events/00003/00000000000000012000-00000000000000012999.avro. The digits are
 * zero-padded so that names sort as their numbers do. first and last are the offsets of the
 * first and last record inside (the offsets between them that are not records are the
 * transactions' markers, which are not archived). The next object of the partition starts
 * after the last: a writer resumes after the highest last offset it finds, so that a restart
 * writes no object twice and leaves no offset out. Two writers racing for one partition in a
 * rebalance can write overlapping ranges under different names: a reader drops a record whose
 * offset it has seen (each record carries its offset).
 *
 * Each object is an Avro object container file (deflate) of KC_ARCHIVE_SCHEMA records: the
 * Kafka record as it was, the value still in the Confluent wire format (magic byte, schema id,
 * Avro body), and the schema id read from it for convenience.
 */
#ifndef KCHAT_ARCHIVE_H
#define KCHAT_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#define KC_ARCHIVE_SCHEMA                                                                      \
    "{\"type\":\"record\",\"name\":\"Record\",\"namespace\":\"kchat.archive\","                \
    "\"doc\":\"One Kafka record of a kchat topic, as it was written.\",\"fields\":["          \
    "{\"name\":\"topic\",\"type\":\"string\"},"                                                \
    "{\"name\":\"partition\",\"type\":\"int\"},"                                               \
    "{\"name\":\"offset\",\"type\":\"long\"},"                                                 \
    "{\"name\":\"timestamp\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}," \
    "\"doc\":\"the record's timestamp (CreateTime), ms since the epoch\"},"                      \
    "{\"name\":\"key\",\"type\":[\"null\",\"bytes\"]},"                                        \
    "{\"name\":\"value\",\"type\":[\"null\",\"bytes\"],"                                       \
    "\"doc\":\"the value as it was: Confluent wire format (0, schema id, Avro body)\"},"        \
    "{\"name\":\"schema_id\",\"type\":[\"null\",\"int\"],"                                     \
    "\"doc\":\"the schema id of the value's framing; null when the value is not framed\"},"    \
    "{\"name\":\"headers\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"record\","       \
    "\"name\":\"Header\",\"fields\":[{\"name\":\"key\",\"type\":\"string\"},"                  \
    "{\"name\":\"value\",\"type\":[\"null\",\"bytes\"]}]}}}]}"

/* The topics archived unless told otherwise. */
#define KC_ARCHIVE_TOPICS "chat.events,chat.accounts,chat.audit"

#define KC_ARCHIVE_MAX_PARTITION 99999
#define KC_ARCHIVE_DIGITS 20

/* Writes "<prefix><topic>/<partition>/" into out (0, or -1 when it does not fit). */
int kc_archive_dir(char *out, size_t outlen, const char *prefix, const char *topic,
                   int32_t partition);
/* Writes the object's name into out (0, or -1 when it does not fit). */
int kc_archive_name(char *out, size_t outlen, const char *prefix, const char *topic,
                    int32_t partition, int64_t first, int64_t last);
/* Reads first and last from an object's name (its part after the last '/'); 0, or -1 when it
 * is not an archive object's name (any other object in the folder is ignored). */
int kc_archive_parse(const char *name, int64_t *first, int64_t *last);

#endif
