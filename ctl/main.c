/* kchatctl - operations on a kchat deployment.
 *
 *   kchatctl topics   [--kafka-brokers=...] [--topics-file=kafka/topics.json]
 *                     [--replication-factor=N] [--min-insync-replicas=N]
 *   kchatctl migrate  [--pg-dsn=...] [--migrations-dir=db/migrations]
 *   kchatctl skip-event --partition=N --offset=N --reason=TEXT [--events-topic=chat.events]
 *                     [--pg-dsn=...]
 *   kchatctl register-schemas --schema-registry-url=URL [--schemas-dir=schemas]
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
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
};

static void usage(FILE *out)
{
    fprintf(out, "usage: kchatctl topics|migrate|skip-event|register-schemas [--option=value ...]\n"
                 "  topics      make the Kafka topics match the spec (idempotent)\n"
                 "  migrate     apply the database migrations not yet applied\n"
                 "  skip-event  have the projectors pass over an undecodable record of the "
                 "events topic\n"
                 "  register-schemas  put kchat's schemas into a schema registry with their ids "
                 "and compatibility\n\n");
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
