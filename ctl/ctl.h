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
} ctl_cfg_t;

int ctl_topics(const ctl_cfg_t *cfg);
int ctl_migrate(const ctl_cfg_t *cfg);
int ctl_skip_event(const ctl_cfg_t *cfg);
int ctl_register_schemas(const ctl_cfg_t *cfg);
/* Reads at most max bytes of a file into a NUL-terminated buffer the caller frees. */
int ctl_read_file(const char *path, size_t max, char **out, size_t *len);

#endif
