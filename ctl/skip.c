/* skip.c - `kchatctl skip-event`: name a record of an events topic that the read models are to
 * pass over (table event_skips).
 *
 * A projector stops a partition at a record it cannot decode (projector/pipeline.c). When no
 * projector will ever read it (bytes a foreign writer put there, an event of a version that
 * was rolled back), the operator names it here, with why; the stopped projector notices
 * within seconds and goes on past it, and every later rebuild passes over it too. Naming a
 * record twice keeps the first reason.
 */
#include "ctl.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "kchat/util.h"

int ctl_skip_event(const ctl_cfg_t *cfg)
{
    if (cfg->partition < 0 || cfg->offset < 0) {
        fprintf(stderr, "kchatctl skip-event: --partition and --offset are required (the "
                        "projector's /health and log name them)\n");
        return 2;
    }
    size_t rlen = strlen(cfg->reason);
    if (rlen == 0 || rlen > 500 || !kc_utf8_valid(cfg->reason, rlen)) {
        fprintf(stderr, "kchatctl skip-event: --reason is required: why the record is passed "
                        "over, 1 to 500 bytes of UTF-8\n");
        return 2;
    }
    PGconn *c = PQconnectdb(cfg->pg.dsn);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "kchatctl skip-event: cannot connect to Postgres: %s",
                PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }
    char part[24], off[24];
    kc_strlcpyf(part, sizeof(part), "%lld", cfg->partition);
    kc_strlcpyf(off, sizeof(off), "%lld", cfg->offset);
    const char *params[] = {cfg->events_topic, part, off, cfg->reason};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO event_skips (topic, partition, \"offset\", reason) "
                               "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                               4, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "kchatctl skip-event: %s", PQresultErrorMessage(r));
        rc = 1;
    } else if (strcmp(PQcmdTuples(r), "0") == 0) {
        printf("%s partition %s offset %s was already passed over\n", cfg->events_topic, part,
               off);
    } else {
        printf("%s partition %s offset %s will be passed over by the projectors\n",
               cfg->events_topic, part, off);
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}
