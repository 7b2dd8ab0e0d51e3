/* kchatctl - operations on a kchat deployment.
 *
 *   kchatctl topics   [--kafka-brokers=...] [--topics-file=kafka/topics.json]
 *                     [--replication-factor=N] [--min-insync-replicas=N]
 *   kchatctl migrate  [--pg-dsn=...] [--migrations-dir=db/migrations]
 *   kchatctl skip-event --partition=N --offset=N --reason=TEXT [--events-topic=chat.events]
 *                     [--pg-dsn=...]
 *   kchatctl register-schemas --schema-registry-url=URL [--schemas-dir=schemas]
 *   kchatctl wal-push  --wal-path=%p --wal-name=%f [--s3-...] [--backup-prefix=pg/]
 *   kchatctl wal-fetch --wal-name=%f --wal-path=%p [--s3-...] [--backup-prefix=pg/]
 *   kchatctl pg-backup [--pg-dsn=...] [--backup-files=a.pem,b.pem] [--s3-...]
 *   kchatctl pg-restore --pgdata=DIR [--target-time=T] [--backup-label=L]
 *                     [--restore-files-dir=DIR] [--s3-...]
 *   kchatctl restore  [--archive-prefix=archive/] [--restore-topics=chat.events,...]
 *                     [--restore-topic-prefix=drill.] [--kafka-brokers=...] [--s3-...]
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "kchat/archive.h"
#include "kchat/log.h"
#include "kchat/util.h"

static const kc_cfg_opt_t ctl_opts[] = {
    {"log-level", KC_CFG_STR, offsetof(ctl_cfg_t, log_level), "warn", 4, 5,
     "log threshold: debug, info, warn or error"},
    KC_CFG_KAFKA(ctl_cfg_t, kafka),
    KC_CFG_PG(ctl_cfg_t, pg),
    {"topics-file", KC_CFG_STR, offsetof(ctl_cfg_t, topics_file), "kafka/topics.json", 1, 4096,
     "the declarative topic spec"},
    {"replication-factor", KC_CFG_INT, offsetof(ctl_cfg_t, replication_factor), "0", 0, 16,
     "topics: the replication factor of every topic, instead of the spec's (0: the spec's)"},
    {"min-insync-replicas", KC_CFG_INT, offsetof(ctl_cfg_t, min_insync_replicas), "0", 0, 16,
     "topics: min.insync.replicas of every topic, instead of the spec's (0: the spec's)"},
    {"migrations-dir", KC_CFG_STR, offsetof(ctl_cfg_t, migrations_dir), "db/migrations", 1, 4096,
     "folder of NNNN_name.sql migrations"},
    {"events-topic", KC_CFG_STR, offsetof(ctl_cfg_t, events_topic), "chat.events", 1, 249,
     "skip-event: the topic the record is in"},
    {"partition", KC_CFG_INT, offsetof(ctl_cfg_t, partition), "-1", -1, 1000000,
     "skip-event: the record's partition"},
    {"offset", KC_CFG_INT, offsetof(ctl_cfg_t, offset), "-1", -1, 9223372036854775807LL,
     "skip-event: the record's offset"},
    {"reason", KC_CFG_STR, offsetof(ctl_cfg_t, reason), "", 0, 500,
     "skip-event: why the record is passed over (kept with it)"},
    KC_CFG_SCHEMAS_DIR(ctl_cfg_t, schemas_dir),
    {"schema-registry-url", KC_CFG_STR, offsetof(ctl_cfg_t, schema_registry_url),
     "http://127.0.0.1:17098", 0, 1024,
     "register-schemas: base URL of the schema registry (Confluent's REST API)"},
    KC_CFG_S3(ctl_cfg_t, "backups and archive: the object store, http(s)://host[:port]",
              "backups and archive: the bucket"),
    {"backup-prefix", KC_CFG_STR, offsetof(ctl_cfg_t, backup_prefix), "pg/", 0, 200,
     "backups: the folder of the bucket they are kept in (wal/ and base/ below it)"},
    {"wal-path", KC_CFG_STR, offsetof(ctl_cfg_t, wal_path), "", 0, 4096,
     "wal-push, wal-fetch: the file (archive_command's %p, restore_command's %p)"},
    {"wal-name", KC_CFG_STR, offsetof(ctl_cfg_t, wal_name), "", 0, 200,
     "wal-push, wal-fetch: its name in the archive (%f)"},
    {"backup-part-mib", KC_CFG_INT, offsetof(ctl_cfg_t, backup_part_mib), "1024", 1, 5120,
     "pg-backup: the base backup is stored in parts of this many MiB"},
    {"backup-work-dir", KC_CFG_STR, offsetof(ctl_cfg_t, backup_work_dir), "/tmp", 1, 4096,
     "pg-backup: where the base backup is written before it is sent (needs its size)"},
    {"pg-bin-dir", KC_CFG_STR, offsetof(ctl_cfg_t, pg_bin_dir), "", 0, 4096,
     "pg-backup: the folder of pg_basebackup (empty: the PATH)"},
    {"backup-files", KC_CFG_STR, offsetof(ctl_cfg_t, backup_files), "", 0, 8192,
     "pg-backup: comma-separated files kept with the backup (the token and VAPID keys)"},
    {"pgdata", KC_CFG_STR, offsetof(ctl_cfg_t, pgdata), "", 0, 4096,
     "pg-restore: the empty folder the cluster is restored into"},
    {"target-time", KC_CFG_STR, offsetof(ctl_cfg_t, target_time), "", 0, 64,
     "pg-restore: recover up to this UTC time, 2026-12-07T02:40:00Z (empty: all of the archive)"},
    {"backup-label", KC_CFG_STR, offsetof(ctl_cfg_t, backup_label), "", 0, 64,
     "pg-restore: the backup to start from (empty: the newest that ended before the target)"},
    {"restore-files-dir", KC_CFG_STR, offsetof(ctl_cfg_t, restore_files_dir), "", 0, 4096,
     "pg-restore: where the backup's files are written (empty: not restored)"},
    {"restore-with-keys", KC_CFG_BOOL, offsetof(ctl_cfg_t, restore_with_keys), "false", 0, 1,
     "pg-restore: put the store's keys in the restore_command (else the server's environment)"},
    {"archive-prefix", KC_CFG_STR, offsetof(ctl_cfg_t, archive_prefix), "archive/", 0, 200,
     "restore: the folder of the bucket kchat-archiver keeps the topics in (letters, digits "
     "and ._/-)"},
    {"restore-topics", KC_CFG_STR, offsetof(ctl_cfg_t, restore_topics), KC_ARCHIVE_TOPICS, 1,
     4096, "restore: comma-separated topics replayed from the archive"},
    {"restore-topic-prefix", KC_CFG_STR, offsetof(ctl_cfg_t, restore_topic_prefix), "", 0, 200,
     "restore: prepended to each topic's name in the cluster (\"drill.\": beside the live "
     "topics)"},
    {"restore-skips", KC_CFG_BOOL, offsetof(ctl_cfg_t, restore_skips), "false", 0, 1,
     "restore: move event_skips (--pg-dsn) of the topics to the records' new offsets"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: kchatctl topics|migrate|skip-event|register-schemas|wal-push|wal-fetch|"
                 "pg-backup|pg-restore|restore [--option=value ...]\n"
                 "  topics      make the Kafka topics match the spec (idempotent)\n"
                 "  migrate     apply the database migrations not yet applied\n"
                 "  skip-event  have the projectors pass over an undecodable record of the "
                 "events topic\n"
                 "  register-schemas  put kchat's schemas into a schema registry with their ids "
                 "and compatibility\n"
                 "  wal-push    archive_command: put a WAL file into the object store\n"
                 "  wal-fetch   restore_command: get a WAL file from the object store\n"
                 "  pg-backup   a base backup of Postgres and the key files, into the object "
                 "store\n"
                 "  pg-restore  a cluster from a backup and the WAL archive, up to a time\n"
                 "  restore     the topics' archive from the object store into empty topics\n\n");
    kc_config_usage(ctl_opts, KC_ARRAY_LEN(ctl_opts), "kchatctl <command>", 0, out);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    int (*fn)(const ctl_cfg_t *) = NULL;
    if (strcmp(cmd, "topics") == 0)
        fn = ctl_topics;
    else if (strcmp(cmd, "migrate") == 0)
        fn = ctl_migrate;
    else if (strcmp(cmd, "skip-event") == 0)
        fn = ctl_skip_event;
    else if (strcmp(cmd, "register-schemas") == 0)
        fn = ctl_register_schemas;
    else if (strcmp(cmd, "wal-push") == 0)
        fn = ctl_wal_push;
    else if (strcmp(cmd, "wal-fetch") == 0)
        fn = ctl_wal_fetch;
    else if (strcmp(cmd, "pg-backup") == 0)
        fn = ctl_pg_backup;
    else if (strcmp(cmd, "pg-restore") == 0)
        fn = ctl_pg_restore;
    else if (strcmp(cmd, "restore") == 0)
        fn = ctl_restore;
    if (!fn) {
        fprintf(stderr, "kchatctl: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    ctl_cfg_t cfg = {0};
    char err[512];
    kc_log_init("kchatctl", KC_LOG_WARN);
    argv[1] = argv[0];
    int rc = kc_config_load(ctl_opts, KC_ARRAY_LEN(ctl_opts), &cfg, argc - 1, argv + 1, NULL,
                            stdout, err, sizeof(err));
    int exit_code = 0;
    kc_log_level_t lvl;
    if (rc < 0) {
        fprintf(stderr, "kchatctl: %s\n", err);
        exit_code = 2;
    } else if (rc == 0 && kc_log_level_parse(cfg.log_level, &lvl) != 0) {
        fprintf(stderr, "kchatctl: invalid value for log-level: '%s'\n", cfg.log_level);
        exit_code = 2;
    } else if (rc == 0) {
        kc_log_set_level(lvl);
        exit_code = fn(&cfg);
    }
    kc_config_free(ctl_opts, KC_ARRAY_LEN(ctl_opts), &cfg);
    return exit_code;
}
