#!/usr/bin/env python3
"""Writes kchat's Grafana dashboards, monitoring/grafana/dashboards/*.json, from the tables
below: panel ids, positions and the datasource variable are made here, so each file is a
valid dashboard by construction. Edit this file, then run

    python3 monitoring/grafana/dashboards.py

and commit the script and the JSON together (tests/system/deploy/test_monitoring.py checks
that they agree, and that every panel's query has data on a running stack).

Every query reads the scrape jobs of monitoring/prometheus/alerts.yml (kchat-gateway,
kchat-processor, kchat-projector, kchat-notifier, kchat-archiver, kchat-api); series named
level:metric:operation are that file's recording rules, so load it into the Prometheus the
dashboards read.
"""
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
PJ, JJ, AJ = 'job="kchat-processor"', 'job="kchat-projector"', 'job="kchat-api"'
NJ = 'job="kchat-notifier"'
RJ = 'job="kchat-archiver"'


def q(expr, legend=""):
    return (expr, legend)


def panel(title, unit, *targets, kind="timeseries", desc="", width=12, height=8):
    return {"title": title, "unit": unit, "targets": targets, "kind": kind, "desc": desc,
            "w": width, "h": height}


def stat(title, unit, *targets, desc="", width=6):
    return panel(title, unit, *targets, kind="stat", desc=desc, width=width, height=4)


def instance_var(job):
    return {"name": "instance", "label": "Instance",
            "query": f'label_values(up{{job="{job}"}}, instance)'}


# ---- the dashboards ----

OVERVIEW = {
    "uid": "kchat-overview", "title": "kchat / Overview",
    "description": "The whole service: targets, readiness, ack latency against its SLO, "
                   "traffic, lag.",
    "vars": [],
    "panels": [
        stat("Gateways up", "none", q('sum(up{job="kchat-gateway"})'), width=3),
        stat("Processors up", "none", q('sum(up{job="kchat-processor"})'), width=3),
        stat("Projectors up", "none", q('sum(up{job="kchat-projector"})'), width=3),
        stat("Notifiers up", "none", q(f'sum(up{{{NJ}}})'), width=3),
        stat("Archivers up", "none", q(f'sum(up{{{RJ}}})'), width=3),
        stat("APIs up", "none", q('sum(up{job="kchat-api"})'), width=3),
        stat("Notifications dropped, last hour", "none",
             q(f'sum(increase(kchat_notifier_failed_total{{{NJ},reason=~"refused|deadline"}}[1h]))'),
             desc="Sends a push service or webhook refused for good, or that outlived "
                  "--send-deadline-s (KchatNotifierSendsFailing).", width=3),
        stat("Archive lag", "s", q(f"max(kchat_archiver_oldest_pending_seconds{{{RJ}}})"),
             desc="Age of the oldest file not yet in the object store: about --roll-age-s "
                  "when all is well (KchatArchiverBehind above 30 minutes).", width=3),
        panel("Not ready, and failing health checks", "none",
              q("sum by (job) (1 - kchat_ready)", "not ready: {{job}}"),
              q("sum by (job, check) (1 - kchat_health_check_up)", "{{check}} failing: {{job}}"),
              desc="Instances of each job whose /health answers 503 (kchat_ready 0: a check "
                   "failing, or draining), and instances failing each health check. 0 when "
                   "all is well.",
              width=24, height=6),
        panel("Ack latency (message.send read to ack queued)", "s",
              q("job:kchat_gateway_ack_latency_seconds:p50_rate5m", "p50"),
              q("job:kchat_gateway_ack_latency_seconds:p99_rate5m", "p99"),
              desc="All gateways, over 5 minutes (recording rules of alerts.yml)."),
        panel("Ack-latency SLO: acks slower than 0.5 s", "percentunit",
              q("kchat:gateway_ack_slow:ratio_rate5m", "5m"),
              q("kchat:gateway_ack_slow:ratio_rate1h", "1h"),
              q("kchat:gateway_ack_slow:ratio_rate6h", "6h"),
              desc="The SLO allows 1 % (burn rate 1). The fast-burn alert fires above 14.4 % "
                   "over both 1h and 5m, or 6 % over both 6h and 30m."),
        panel("Acks by status", "ops",
              q(f'sum by (status) (rate(kchat_gateway_acks_total{{job="kchat-gateway"}}[{RI}]))',
                "{{status}}")),
        panel("Open WebSockets", "none",
              q('sum(kchat_gateway_connections{job="kchat-gateway"})', "connections")),
        panel("Commands in, events out", "ops",
              q(f'sum(rate(kchat_processor_commands_consumed_total{{{PJ}}}[{RI}]))',
                "commands consumed"),
              q(f'sum(rate(kchat_processor_events_produced_total{{job="kchat-processor"}}[{RI}]))',
                "events produced"),
              q(f'sum(rate(kchat_projector_events_consumed_total{{job="kchat-projector"}}[{RI}]))',
                "events projected")),
        panel("Kafka consumer lag, by client", "none",
              q("max by (client) (kchat_kafka_consumer_lag_messages)", "{{client}}")),
        panel("API requests, by status", "reqps",
              q("status:kchat_api_http_requests:rate5m", "{{status}}")),
        panel("Processor transactions, by outcome", "ops",
              q(f'sum by (outcome) (rate(kchat_processor_transactions_total{{{PJ}}}[{RI}]))',
                "{{outcome}}")),
        panel("Projector lag (events not yet applied)", "none",
              q('sum(kchat_projector_lag_events{job="kchat-projector"})', "events")),
        panel("Dead letters and slow-consumer closes, last hour", "none",
              q('sum(increase(kchat_processor_dead_letters_total{job="kchat-processor"}[1h]))',
                "dead letters"),
              q('sum(increase(kchat_gateway_slow_consumer_closes_total{job="kchat-gateway"}[1h]))',
                "slow-consumer closes")),
        panel("Notifications sent and failed", "ops",
              q(f"sum by (kind) (rate(kchat_notifier_sent_total{{{NJ}}}[{RI}]))", "sent {{kind}}"),
              q(f"sum by (reason) (rate(kchat_notifier_failed_total{{{NJ}}}[{RI}]))",
                "failed {{reason}}"),
              desc="Web Push and webhook sends the targets took (2xx), and those dropped: "
                   "gone (unsubscribed, normal), refused, deadline, encrypt."),
        panel("Archive: records archived, upload errors", "ops",
              q(f"sum by (topic) (rate(kchat_archiver_records_total{{{RJ}}}[{RI}]))",
                "{{topic}}"),
              q(f"sum(rate(kchat_archiver_upload_errors_total{{{RJ}}}[{RI}]))",
                "upload errors"),
              desc="Records of each topic in objects the store took, and uploads it refused "
                   "(each tried again; KchatArchiverUploadsFailing)."),
    ],
}

G = 'job="kchat-gateway",instance=~"$instance"'
GATEWAY = {
    "uid": "kchat-gateway", "title": "kchat / Gateway",
    "description": "kchat-gateway: WebSockets, frames, acks, deliveries, its Kafka clients.",
    "vars": [instance_var("kchat-gateway")],
    "panels": [
        panel("Open WebSockets", "none",
              q(f"kchat_gateway_connections{{{G}}}", "{{instance}}")),
        panel("Handshakes, by outcome", "ops",
              q(f"sum by (outcome) (rate(kchat_gateway_handshakes_total{{{G}}}[{RI}]))",
                "{{outcome}}")),
        panel("Frames in, by type", "ops",
              q(f"sum by (type) (rate(kchat_gateway_frames_in_total{{{G}}}[{RI}]))", "{{type}}")),
        panel("Frames out, by type", "ops",
              q(f"sum by (type) (rate(kchat_gateway_frames_out_total{{{G}}}[{RI}]))", "{{type}}")),
        panel("Acks, by status", "ops",
              q(f"sum by (status) (rate(kchat_gateway_acks_total{{{G}}}[{RI}]))", "{{status}}")),
        panel("Ack latency", "s",
              q(f'instance:kchat_gateway_ack_latency_seconds:p99_rate5m{{{G}}}',
                "p99 {{instance}}"),
              q(f"histogram_quantile(0.5, sum by (instance, le) "
                f"(rate(kchat_gateway_ack_latency_seconds_bucket{{{G}}}[{RI}])))",
                "p50 {{instance}}"),
              desc="From a message.send read to its ack queued to the socket."),
        panel("Delivery latency (occurred_at to message.create queued)", "s",
              q(f"histogram_quantile(0.99, sum by (instance, le) "
                f"(rate(kchat_gateway_delivery_latency_seconds_bucket{{{G}}}[{RI}])))",
                "p99 {{instance}}"),
              desc="Two hosts' wall clocks: the processor's and the gateway's."),
        panel("Slow consumers", "ops",
              q(f"sum by (instance) (rate(kchat_gateway_slow_consumer_closes_total{{{G}}}[{RI}]))",
                "closed (4008) {{instance}}"),
              q(f"sum by (instance) (rate(kchat_gateway_send_queue_drops_total{{{G}}}[{RI}]))",
                "frames dropped {{instance}}"),
              q(f"sum by (instance) (rate(kchat_gateway_sync_pages_cut_total{{{G}}}[{RI}]))",
                "sync pages cut {{instance}}")),
        panel("Closes, by code", "ops",
              q(f"sum by (code) (rate(kchat_gateway_closes_total{{{G}}}[{RI}]))", "{{code}}"),
              desc="Connections the gateway closed (4001 token expired, 4008 slow, 1001 "
                   "going away, 1007/1009 bad frames...)."),
        panel("Commands produced, deliveries consumed", "ops",
              q(f"sum by (instance) (rate(kchat_gateway_commands_produced_total{{{G}}}[{RI}]))",
                "commands {{instance}}"),
              q(f"sum by (instance) (rate(kchat_gateway_deliveries_consumed_total{{{G}}}[{RI}]))",
                "deliveries {{instance}}")),
        panel("Errors", "ops",
              q(f"sum by (instance) (rate(kchat_gateway_produce_errors_total{{{G}}}[{RI}]))",
                "produce {{instance}}"),
              q(f"sum by (instance) (rate(kchat_gateway_delivery_errors_total{{{G}}}[{RI}]))",
                "delivery {{instance}}"),
              q(f"sum by (instance) (rate(kchat_gateway_redis_errors_total{{{G}}}[{RI}]))",
                "redis {{instance}}")),
        panel("Redis pub/sub messages, presence refused", "ops",
              q(f"sum by (instance) (rate(kchat_gateway_pubsub_messages_total{{{G}}}[{RI}]))",
                "pub/sub {{instance}}"),
              q(f"sum by (instance) (rate(kchat_gateway_presence_refused_total{{{G}}}[{RI}]))",
                "presence refused {{instance}}")),
        panel("Kafka: delivery consumer lag, brokers up", "none",
              q(f"kchat_kafka_consumer_lag_messages{{{G}}}", "lag {{client}}"),
              q(f"kchat_kafka_brokers_up{{{G}}}", "brokers up {{client}}")),
        panel("Kafka: produce queue and round trip, p99", "s",
              q(f'kchat_kafka_produce_queue_seconds{{{G},percentile="99"}}', "queue {{client}}"),
              q(f'kchat_kafka_request_rtt_seconds{{{G},percentile="99"}}', "rtt {{client}}")),
        panel("Resident memory", "bytes",
              q(f"process_resident_memory_bytes{{{G}}}", "{{instance}}")),
        panel("CPU", "percentunit",
              q(f"rate(process_cpu_seconds_total{{{G}}}[{RI}])", "{{instance}}")),
    ],
}

P = 'job="kchat-processor",instance=~"$instance"'
PROCESSOR = {
    "uid": "kchat-processor", "title": "kchat / Processor",
    "description": "kchat-processor: commands to events, transactions, routing, restores.",
    "vars": [instance_var("kchat-processor")],
    "panels": [
        panel("Commands consumed, events produced", "ops",
              q(f"sum by (instance) (rate(kchat_processor_commands_consumed_total{{{P}}}[{RI}]))",
                "commands {{instance}}"),
              q(f"sum by (instance) (rate(kchat_processor_events_produced_total{{{P}}}[{RI}]))",
                "events {{instance}}"),
              q(f"sum by (instance) (rate(kchat_processor_duplicates_total{{{P}}}[{RI}]))",
                "duplicates {{instance}}")),
        panel("Rejections, by reason", "ops",
              q(f"sum by (reason) (rate(kchat_processor_rejections_total{{{P}}}[{RI}]))",
                "{{reason}}")),
        panel("Transactions, by outcome", "ops",
              q(f"sum by (outcome) (rate(kchat_processor_transactions_total{{{P}}}[{RI}]))",
                "{{outcome}}"),
              desc="Any aborted transaction is a restore and a rewind."),
        panel("Dead letters (chat.commands.dlq), last hour", "none",
              q(f"sum by (instance) (increase(kchat_processor_dead_letters_total{{{P}}}[1h]))",
                "{{instance}}")),
        panel("Transaction commit time", "s",
              q("job:kchat_processor_transaction_commit_seconds:p99_rate5m", "p99 (all)"),
              q(f"histogram_quantile(0.5, sum by (instance, le) "
                f"(rate(kchat_processor_transaction_commit_seconds_bucket{{{P}}}[{RI}])))",
                "p50 {{instance}}")),
        panel("Transaction stages, p99", "s",
              q(f"histogram_quantile(0.99, sum by (stage, le) "
                f"(rate(kchat_processor_transaction_stage_seconds_bucket{{{P}}}[{RI}])))",
                "{{stage}}")),
        panel("Commands per transaction", "none",
              q(f"histogram_quantile(0.5, sum by (le) "
                f"(rate(kchat_processor_transaction_commands_bucket{{{P}}}[{RI}])))", "p50"),
              q(f"histogram_quantile(0.99, sum by (le) "
                f"(rate(kchat_processor_transaction_commands_bucket{{{P}}}[{RI}])))", "p99")),
        panel("Input delay (command written to applied), p99", "s",
              q(f"histogram_quantile(0.99, sum by (instance, le) "
                f"(rate(kchat_processor_input_delay_seconds_bucket{{{P}}}[{RI}])))",
                "{{instance}}")),
        panel("Deliveries", "ops",
              q(f"sum(rate(kchat_processor_delivery_records_total{{{P}}}[{RI}]))", "records"),
              q(f"sum(rate(kchat_processor_delivery_items_total{{{P}}}[{RI}]))", "items")),
        panel("Routing (Redis presence registry)", "ops",
              q(f"sum(rate(kchat_processor_route_lookups_total{{{P}}}[{RI}]))", "lookups"),
              q(f"sum(rate(kchat_processor_route_failures_total{{{P}}}[{RI}]))", "failures"),
              q(f"sum(rate(kchat_processor_route_skipped_total{{{P}}}[{RI}]))", "skipped")),
        panel("State: restores and checkpoints", "ops",
              q(f"sum(rate(kchat_processor_checkpoints_total{{{P}}}[{RI}]))", "checkpoints"),
              q(f"sum(rate(kchat_processor_restored_records_total{{{P}}}[{RI}]))",
                "records restored"),
              q(f"sum(rate(kchat_processor_replayed_events_total{{{P}}}[{RI}]))",
                "events replayed")),
        panel("Partitions restoring, mean restore time", "none",
              q(f"kchat_processor_partitions_restoring{{{P}}}", "restoring {{instance}}"),
              q(f"kchat_processor_restore_seconds_sum{{{P}}} / "
                f"kchat_processor_restore_seconds_count{{{P}}}",
                "mean restore (s) {{instance}}")),
        panel("Conversations and dedupe entries in memory", "none",
              q(f"kchat_processor_conversations{{{P}}}", "conversations {{instance}}"),
              q(f"kchat_processor_dedupe_entries{{{P}}}", "dedupe entries {{instance}}")),
        panel("Kafka: command consumer lag, brokers up", "none",
              q(f"kchat_kafka_consumer_lag_messages{{{P}}}", "lag {{client}}"),
              q(f"kchat_kafka_brokers_up{{{P}}}", "brokers up {{client}}")),
        panel("Kafka: produce queue and round trip, p99", "s",
              q(f'kchat_kafka_produce_queue_seconds{{{P},percentile="99"}}', "queue {{client}}"),
              q(f'kchat_kafka_request_rtt_seconds{{{P},percentile="99"}}', "rtt {{client}}")),
        panel("Resident memory", "bytes",
              q(f"process_resident_memory_bytes{{{P}}}", "{{instance}}")),
    ],
}

J = 'job="kchat-projector",instance=~"$instance"'
PROJECTOR = {
    "uid": "kchat-projector", "title": "kchat / Projector",
    "description": "kchat-projector: chat.events into the Postgres and Redis read models.",
    "vars": [instance_var("kchat-projector")],
    "panels": [
        panel("Events consumed and applied", "ops",
              q(f"sum(rate(kchat_projector_events_consumed_total{{{J}}}[{RI}]))", "consumed"),
              q(f"sum by (model) (rate(kchat_projector_events_applied_total{{{J}}}[{RI}]))",
                "applied to {{model}}")),
        panel("Lag, by partition", "none",
              q(f"kchat_projector_lag_events{{{J}}}", "partition {{partition}}"),
              desc="Offsets not yet applied to both models; 0 when caught up."),
        panel("Apply time per batch, p99", "s",
              q(f"histogram_quantile(0.99, sum by (model, le) "
                f"(rate(kchat_projector_apply_seconds_bucket{{{J}}}[{RI}])))", "{{model}}")),
        panel("Events per batch", "none",
              q(f"histogram_quantile(0.5, sum by (le) "
                f"(rate(kchat_projector_batch_events_bucket{{{J}}}[{RI}])))", "p50"),
              q(f"histogram_quantile(0.99, sum by (le) "
                f"(rate(kchat_projector_batch_events_bucket{{{J}}}[{RI}])))", "p99")),
        panel("Failures: resyncs and undecodable events passed over", "ops",
              q(f"sum(rate(kchat_projector_resyncs_total{{{J}}}[{RI}]))", "resyncs"),
              q(f"sum(rate(kchat_projector_poison_events_total{{{J}}}[{RI}]))",
                "passed over (kchatctl skip-event)")),
        panel("Partitions stopped at an undecodable event", "none",
              q(f"sum(kchat_projector_halted_partitions{{{J}}})", "stopped")),
        panel("Notifications (NOTIFY kchat_applied) and rebuilds", "ops",
              q(f"sum(rate(kchat_projector_notifications_total{{{J}}}[{RI}]))", "notifications"),
              q(f"sum by (kind) (rate(kchat_projector_rebuilds_total{{{J}}}[{RI}]))",
                "rebuilds {{kind}}")),
        panel("Kafka: consumer lag, brokers up", "none",
              q(f"kchat_kafka_consumer_lag_messages{{{J}}}", "lag {{client}}"),
              q(f"kchat_kafka_brokers_up{{{J}}}", "brokers up {{client}}")),
        panel("Resident memory", "bytes",
              q(f"process_resident_memory_bytes{{{J}}}", "{{instance}}")),
    ],
}

N = 'job="kchat-notifier",instance=~"$instance"'
NOTIFIER = {
    "uid": "kchat-notifier", "title": "kchat / Notifier",
    "description": "kchat-notifier: chat.events into Web Push and signed webhooks for the "
                   "members who are not connected.",
    "vars": [instance_var("kchat-notifier")],
    "panels": [
        panel("Messages read, notifications opened and coalesced", "ops",
              q(f"sum(rate(kchat_notifier_messages_total{{{N}}}[{RI}]))", "messages"),
              q(f"sum(rate(kchat_notifier_notifications_total{{{N}}}[{RI}]))",
                "notifications opened"),
              q(f"sum(rate(kchat_notifier_coalesced_total{{{N}}}[{RI}]))",
                "coalesced into one"),
              desc="A member's first unheard message in a conversation opens a notification; "
                   "the ones within --coalesce-ms are counted into it."),
        panel("Members skipped, by reason", "ops",
              q(f"sum by (reason) (rate(kchat_notifier_skipped_total{{{N}}}[{RI}]))",
                "{{reason}}"),
              desc="connected: on a gateway, saw it live; muted; no_target: no subscription "
                   "and no webhook; connected_at_send: came back before the notification "
                   "was due."),
        panel("Sent, by kind", "ops",
              q(f"sum by (kind) (rate(kchat_notifier_sent_total{{{N}}}[{RI}]))", "{{kind}}"),
              desc="Web Push and webhook requests the target took (2xx)."),
        panel("Failed, by reason", "ops",
              q(f"sum by (reason) (rate(kchat_notifier_failed_total{{{N}}}[{RI}]))",
                "{{reason}}"),
              desc="Dropped sends. gone: the browser unsubscribed (404, 410; normal). refused: "
                   "any other 4xx, for good (403: the VAPID key changed). deadline: tried "
                   "until --send-deadline-s. encrypt: the subscription's keys are unusable."),
        panel("Latency (newest message to the target taking it)", "s",
              q(f"histogram_quantile(0.99, sum by (kind, le) "
                f"(rate(kchat_notifier_latency_seconds_bucket{{{N}}}[{RI}])))", "p99 {{kind}}"),
              q(f"histogram_quantile(0.5, sum by (kind, le) "
                f"(rate(kchat_notifier_latency_seconds_bucket{{{N}}}[{RI}])))", "p50 {{kind}}"),
              desc="The --coalesce-ms wait included: a mention goes at once, other messages "
                   "wait for company."),
        panel("Retries, by status", "ops",
              q(f"sum by (status) (rate(kchat_notifier_retries_total{{{N}}}[{RI}]))",
                "{{status}}"),
              desc="Sends tried again: 429 (a push service throttles this sender), 5xx, none "
                   "(no answer within --http-timeout-ms)."),
        panel("Sends claimed (in flight)", "none",
              q(f"kchat_notifier_sends_claimed{{{N}}}", "{{instance}}"),
              desc="Near --sends-max for long: the targets are slower than the messages."),
        panel("Resyncs", "ops",
              q(f"sum by (instance) (rate(kchat_notifier_resyncs_total{{{N}}}[{RI}]))",
                "{{instance}}"),
              desc="Batches given up and the stored offsets read again (a partition moved, or "
                   "Postgres failed)."),
        panel("Kafka: consumer lag, brokers up", "none",
              q(f"kchat_kafka_consumer_lag_messages{{{N}}}", "lag {{client}}"),
              q(f"kchat_kafka_brokers_up{{{N}}}", "brokers up {{client}}")),
        panel("Resident memory", "bytes",
              q(f"process_resident_memory_bytes{{{N}}}", "{{instance}}")),
    ],
}

R = 'job="kchat-archiver",instance=~"$instance"'
ARCHIVER = {
    "uid": "kchat-archiver", "title": "kchat / Archiver",
    "description": "kchat-archiver: chat.events, chat.accounts and chat.audit into the object "
                   "store as Avro object container files, for kchatctl restore and analytics.",
    "vars": [instance_var("kchat-archiver")],
    "panels": [
        panel("Records archived, by topic", "ops",
              q(f"sum by (topic) (rate(kchat_archiver_records_total{{{R}}}[{RI}]))", "{{topic}}"),
              desc="Records in objects the store took (counted when the upload succeeds)."),
        panel("Objects written, by topic", "ops",
              q(f"sum by (topic) (rate(kchat_archiver_objects_total{{{R}}}[{RI}]))", "{{topic}}"),
              desc="One object per partition each --roll-bytes or --roll-age-s."),
        panel("Bytes written, by topic", "Bps",
              q(f"sum by (topic) (rate(kchat_archiver_bytes_total{{{R}}}[{RI}]))", "{{topic}}")),
        panel("Upload errors, files read again", "ops",
              q(f"sum by (instance) (rate(kchat_archiver_upload_errors_total{{{R}}}[{RI}]))",
                "upload errors {{instance}}"),
              q(f"sum by (instance) (rate(kchat_archiver_files_reread_total{{{R}}}[{RI}]))",
                "files read again {{instance}}"),
              desc="Uploads the store did not take (each tried again, waiting up to a minute; "
                   "KchatArchiverUploadsFailing), and spool files that could not be read back, "
                   "whose records were read again from Kafka."),
        panel("Archive lag (oldest file not yet in the store)", "s",
              q(f"kchat_archiver_oldest_pending_seconds{{{R}}}", "{{instance}}"),
              desc="About --roll-age-s (300 s) when all is well; 0 when nothing waits. "
                   "KchatArchiverBehind fires above 30 minutes."),
        panel("Records pending (read, not yet in the store)", "none",
              q(f"kchat_archiver_pending_records{{{R}}}", "{{instance}}")),
        panel("Partitions assigned", "none",
              q(f"kchat_archiver_partitions{{{R}}}", "{{instance}}"),
              desc="Archivers share the partitions of the archived topics through their "
                   "consumer group."),
        panel("Health checks (object store, Kafka consumer)", "none",
              q(f"kchat_health_check_up{{{R}}}", "{{check}} {{instance}}"),
              desc="object_store is 0 while uploads fail."),
        panel("Kafka: consumer lag, brokers up", "none",
              q(f"kchat_kafka_consumer_lag_messages{{{R}}}", "lag {{client}}"),
              q(f"kchat_kafka_brokers_up{{{R}}}", "brokers up {{client}}")),
        panel("Resident memory", "bytes",
              q(f"process_resident_memory_bytes{{{R}}}", "{{instance}}"),
              desc="An upload holds its object (up to --roll-bytes) in memory."),
    ],
}

A = 'job="kchat-api",instance=~"$instance"'
API = {
    "uid": "kchat-api", "title": "kchat / API",
    "description": "kchat-api: REST requests, latency, commands, logins.",
    "vars": [instance_var("kchat-api")],
    "panels": [
        panel("Requests, by route", "reqps",
              q(f"sum by (route) (rate(kchat_api_http_requests_total{{{A}}}[{RI}]))", "{{route}}")),
        panel("Requests, by status", "reqps",
              q(f"sum by (status) (rate(kchat_api_http_requests_total{{{A}}}[{RI}]))",
                "{{status}}")),
        panel("Latency p99, by route", "s",
              q("route:kchat_api_http_request_duration_seconds:p99_rate5m", "{{route}}"),
              desc="All instances, over 5 minutes (recording rule of alerts.yml)."),
        panel("Latency p50, by route", "s",
              q(f"histogram_quantile(0.5, sum by (route, le) "
                f"(rate(kchat_api_http_request_duration_seconds_bucket{{{A}}}[{RI}])))",
                "{{route}}")),
        panel("Commands sent, timeouts (504)", "ops",
              q(f"sum(rate(kchat_api_commands_total{{{A}}}[{RI}]))", "commands"),
              q(f"sum(rate(kchat_api_command_timeouts_total{{{A}}}[{RI}]))", "timeouts")),
        panel("Password hashing", "none",
              q(f"sum(kchat_api_pwhash_inflight{{{A}}})", "running"),
              q(f"sum(kchat_api_pwhash_queued{{{A}}})", "queued"),
              q(f"sum(rate(kchat_api_pwhash_jobs_total{{{A}}}[{RI}]))", "jobs/s")),
        panel("Login and registration refusals, by reason", "ops",
              q(f"sum by (reason) (rate(kchat_api_auth_refusals_total{{{A}}}[{RI}]))",
                "{{reason}}")),
        panel("Connections refused and cut", "ops",
              q(f"sum(rate(kchat_api_connections_refused_total{{{A}}}[{RI}]))", "refused"),
              q(f"sum(rate(kchat_api_requests_cut_total{{{A}}}[{RI}]))", "cut")),
        panel("Account events relayed to chat.accounts, relay errors, relaying instances", "none",
              q(f"sum(rate(kchat_api_account_events_total{{{A}}}[{RI}]))", "events/s"),
              q(f"sum(rate(kchat_api_account_relay_errors_total{{{A}}}[{RI}]))", "errors/s"),
              q(f"sum(kchat_api_account_relay_leader{{{A}}})", "relaying")),
        panel("Audit events relayed to chat.audit, relay errors, events lost", "none",
              q(f"sum(rate(kchat_api_audit_events_total{{{A}}}[{RI}]))", "events/s"),
              q(f"sum(rate(kchat_api_audit_relay_errors_total{{{A}}}[{RI}]))", "errors/s"),
              q(f"sum(increase(kchat_api_audit_write_errors_total{{{A}}}[{RI}]))", "lost")),
        panel("Kafka: producer brokers up, produce queue p99", "none",
              q(f"kchat_kafka_brokers_up{{{A}}}", "brokers up {{client}}"),
              q(f'kchat_kafka_produce_queue_seconds{{{A},percentile="99"}}',
                "queue (s) {{client}}")),
        panel("Resident memory", "bytes",
              q(f"process_resident_memory_bytes{{{A}}}", "{{instance}}")),
    ],
}

C = 'client=~"$client"'
KAFKA = {
    "uid": "kchat-kafka-lag", "title": "kchat / Kafka lag",
    "description": "How far each Kafka consumer of kchat is behind, and its clients' health.",
    "vars": [{"name": "client", "label": "Kafka client",
              "query": "label_values(kchat_kafka_brokers_up, client)"}],
    "panels": [
        panel("Consumer lag, by client", "none",
              q(f"max by (client) (kchat_kafka_consumer_lag_messages{{{C}}})", "{{client}}"),
              desc="From each consumer's position to the last stable offset, over its "
                   "partitions."),
        panel("Projector lag, by partition of chat.events", "none",
              q('max by (partition) (kchat_projector_lag_events{job="kchat-projector"})',
                "partition {{partition}}")),
        panel("chat.commands in and out", "ops",
              q(f'sum(rate(kchat_gateway_commands_produced_total{{job="kchat-gateway"}}[{RI}])) '
                f'+ sum(rate(kchat_api_commands_total{{job="kchat-api"}}[{RI}]))',
                "written (gateways + API)"),
              q(f'sum(rate(kchat_processor_commands_consumed_total{{{PJ}}}[{RI}]))',
                "read (processor)")),
        panel("Processor input delay, p99", "s",
              q(f'histogram_quantile(0.99, sum by (le) (rate('
                f'kchat_processor_input_delay_seconds_bucket{{job="kchat-processor"}}[{RI}])))',
                "p99")),
        panel("Brokers up, by client", "none",
              q(f"kchat_kafka_brokers_up{{{C}}}", "{{client}} {{instance}}")),
        panel("Client errors, by client", "ops",
              q(f"sum by (client) (rate(kchat_kafka_client_errors_total{{{C}}}[{RI}]))",
                "{{client}}")),
        panel("Request round trip to the slowest broker, p99", "s",
              q(f'kchat_kafka_request_rtt_seconds{{{C},percentile="99"}}', "{{client}}")),
        panel("Produce queue time, p99", "s",
              q(f'kchat_kafka_produce_queue_seconds{{{C},percentile="99"}}', "{{client}}")),
    ],
}

READ_MODELS = {
    "uid": "kchat-read-models", "title": "kchat / Read models",
    "description": "Postgres and Redis as kchat's daemons see them: what is written, what is "
                   "read from which, and the errors.",
    "vars": [],
    "panels": [
        panel("Events applied, by model", "ops",
              q("model:kchat_projector_events_applied:rate5m", "{{model}}")),
        panel("Apply time per batch, by model", "s",
              q(f'histogram_quantile(0.99, sum by (model, le) (rate('
                f'kchat_projector_apply_seconds_bucket{{job="kchat-projector"}}[{RI}])))',
                "p99 {{model}}"),
              q(f'histogram_quantile(0.5, sum by (model, le) (rate('
                f'kchat_projector_apply_seconds_bucket{{job="kchat-projector"}}[{RI}])))',
                "p50 {{model}}")),
        panel("Projector lag", "none",
              q('sum(kchat_projector_lag_events{job="kchat-projector"})', "events")),
        panel("Projector resyncs and Redis rebuilds", "ops",
              q(f'sum(rate(kchat_projector_resyncs_total{{job="kchat-projector"}}[{RI}]))',
                "resyncs"),
              q(f'sum by (kind) (rate(kchat_projector_rebuilds_total{{{JJ}}}[{RI}]))',
                "rebuilds {{kind}}")),
        panel("History pages served, by read model", "ops",
              q(f'sum by (source) (rate(kchat_api_history_pages_total{{job="kchat-api"}}[{RI}]))',
                "{{source}}"),
              desc="Pages from Redis (recent messages) or Postgres (older ones, or Redis "
                   "unavailable)."),
        panel("Conversation lists served, by read model", "ops",
              q(f'sum by (source) (rate(kchat_api_conversation_lists_total{{{AJ}}}[{RI}]))',
                "{{source}}")),
        panel("History and list latency p99 (API)", "s",
              q('route:kchat_api_http_request_duration_seconds:p99_rate5m'
                '{route=~"/conversations|/conversations/:id/messages"}', "{{route}}")),
        panel("Redis errors seen by the daemons", "ops",
              q(f'sum(rate(kchat_gateway_redis_errors_total{{job="kchat-gateway"}}[{RI}]))',
                "gateway commands"),
              q(f'sum(rate(kchat_processor_route_failures_total{{job="kchat-processor"}}[{RI}]))',
                "processor route lookups"),
              q(f'sum(rate(kchat_api_auth_throttle_skipped_total{{job="kchat-api"}}[{RI}]))',
                "API throttle checks skipped")),
        panel("Read-model notifications (NOTIFY kchat_applied)", "ops",
              q(f'sum(rate(kchat_projector_notifications_total{{job="kchat-projector"}}[{RI}]))',
                "notifications")),
    ],
}

DASHBOARDS = {"overview": OVERVIEW, "gateway": GATEWAY, "processor": PROCESSOR,
              "projector": PROJECTOR, "notifier": NOTIFIER, "archiver": ARCHIVER, "api": API,
              "kafka-lag": KAFKA, "read-models": READ_MODELS}


# ---- the JSON ----

def variable(v):
    return {
        "name": v["name"], "label": v["label"], "type": "query", "datasource": DS,
        "definition": v["query"],
        "query": {"query": v["query"], "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "regex": "", "sort": 1, "hide": 0,
    }


def render_panel(p, pid, x, y):
    targets = [{"refId": chr(ord("A") + i), "datasource": DS, "expr": expr,
                "legendFormat": legend or "__auto", "range": True, "editorMode": "code"}
               for i, (expr, legend) in enumerate(p["targets"])]
    out = {"id": pid, "type": p["kind"], "title": p["title"], "description": p["desc"],
           "datasource": DS, "gridPos": {"h": p["h"], "w": p["w"], "x": x, "y": y},
           "targets": targets,
           "fieldConfig": {"defaults": {"unit": p["unit"]}, "overrides": []}}
    if p["kind"] == "timeseries":
        out["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1,
                                                    "fillOpacity": 10, "showPoints": "never"}
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom",
                                     "showLegend": True},
                          "tooltip": {"mode": "multi", "sort": "desc"}}
    else:
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": False},
                          "colorMode": "value", "graphMode": "none", "textMode": "auto"}
        out["fieldConfig"]["defaults"]["thresholds"] = {
            "mode": "absolute", "steps": [{"color": "red", "value": None},
                                          {"color": "green", "value": 1}]}
    return out


def render(d):
    panels, x, y, row_h = [], 0, 0, 0
    for i, p in enumerate(d["panels"]):
        if x + p["w"] > 24:
            x, y, row_h = 0, y + row_h, 0
        panels.append(render_panel(p, i + 1, x, y))
        x += p["w"]
        row_h = max(row_h, p["h"])
    ds_var = {"name": "datasource", "label": "Data source", "type": "datasource",
              "query": "prometheus", "current": {}, "options": [], "regex": "", "hide": 0,
              "refresh": 1, "includeAll": False, "multi": False}
    return {
        "__inputs": [],
        "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana",
                        "version": "10.0.0"},
                       {"type": "datasource", "id": "prometheus", "name": "Prometheus",
                        "version": "1.0.0"},
                       {"type": "panel", "id": "timeseries", "name": "Time series",
                        "version": ""},
                       {"type": "panel", "id": "stat", "name": "Stat", "version": ""}],
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana",
                                                               "uid": "-- Grafana --"},
                                  "enable": True, "hide": True,
                                  "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "uid": d["uid"], "title": d["title"], "description": d["description"],
        "tags": ["kchat"], "editable": True, "graphTooltip": 1, "id": None,
        "links": [{"type": "dashboards", "tags": ["kchat"], "asDropdown": True,
                   "title": "kchat", "includeVars": False, "keepTime": True}],
        "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"}, "timepicker": {}, "timezone": "",
        "templating": {"list": [ds_var] + [variable(v) for v in d["vars"]]},
        "panels": panels,
    }


def text(name):
    return json.dumps(render(DASHBOARDS[name]), indent=2, ensure_ascii=False) + "\n"


def main():
    OUT.mkdir(exist_ok=True)
    for name in DASHBOARDS:
        (OUT / f"{name}.json").write_text(text(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
