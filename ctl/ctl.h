/* ctl.h - kchatctl's subcommands. */
#ifndef KCHAT_CTL_H
#define KCHAT_CTL_H

#include <stddef.h>

#include "kchat/app.h"

typedef struct {
    char *log_level;
    kc_kafka_cfg_t kafka;
    kc_pg_cfg_t pg;
    char *topics_file;
    long long replication_factor;  /* 0: each topic's own; else every topic's */
    long long min_insync_replicas; /* 0: each topic's own; else every topic's */
    char *migrations_dir;
    char *events_topic;     /* skip-event */
    long long partition;    /* skip-event: -1 unless given */
    long long offset;       /* skip-event: -1 unless given */
    char *reason;           /* skip-event */
    char *schemas_dir;      /* register-schemas */
    char *schema_registry_url; /* register-schemas */
    /* the object store of the backups and the WAL archive (backup.c) */
    char *s3_endpoint, *s3_bucket, *s3_region, *s3_access_key, *s3_secret_key;
    char *backup_prefix;
    char *wal_path, *wal_name;  /* wal-push, wal-fetch */
    long long backup_part_mib;  /* pg-backup */
    char *backup_work_dir;      /* pg-backup */
    char *pg_bin_dir;           /* pg-backup: where pg_basebackup is ("": the PATH) */
    char *backup_files;         /* pg-backup: comma-separated files kept with each backup */
    char *pgdata;               /* pg-restore */
    char *target_time;          /* pg-restore */
    char *backup_label;         /* pg-restore */
    char *restore_files_dir;    /* pg-restore: where the backup's files go */
    int restore_with_keys;      /* pg-restore: the store's keys in the restore_command */
    char *archive_prefix;       /* restore: the folder of the topics' archive (restore.c) */
    char *restore_topics;       /* restore: comma-separated topics replayed */
    char *restore_topic_prefix; /* restore: prepended to each topic's name in the cluster */
    int restore_skips;          /* restore: event_skips carried over to the new offsets */
} ctl_cfg_t;

int ctl_topics(const ctl_cfg_t *cfg);
int ctl_migrate(const ctl_cfg_t *cfg);
int ctl_skip_event(const ctl_cfg_t *cfg);
int ctl_register_schemas(const ctl_cfg_t *cfg);
int ctl_wal_push(const ctl_cfg_t *cfg);
int ctl_wal_fetch(const ctl_cfg_t *cfg);
int ctl_pg_backup(const ctl_cfg_t *cfg);
int ctl_pg_restore(const ctl_cfg_t *cfg);
int ctl_restore(const ctl_cfg_t *cfg);
/* Reads at most max bytes of a file into a NUL-terminated buffer the caller frees. */
int ctl_read_file(const char *path, size_t max, char **out, size_t *len);

#endif
