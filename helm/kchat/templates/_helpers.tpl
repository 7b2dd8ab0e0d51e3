{{/* Names */}}
{{- define "kchat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kchat.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kchat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The kchat image of a component: its imageTag, else image.tag, else appVersion. Call with (dict "root" $ "component" "api"). */}}
{{- define "kchat.image" -}}
{{- $v := .root.Values }}
{{- $tag := default .root.Chart.AppVersion $v.image.tag }}
{{- with .component }}{{ with (index $v .).imageTag }}{{ $tag = . }}{{ end }}{{ end }}
{{- printf "%s:%s" $v.image.repository $tag }}
{{- end }}

{{/* Labels. Call with (dict "root" $ "component" "api"). */}}
{{- define "kchat.labels" -}}
helm.sh/chart: {{ include "kchat.chart" .root }}
{{ include "kchat.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: kchat
{{- end }}

{{- define "kchat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kchat.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* ceil(shutdownTimeoutMs / 1000) + terminationGraceExtraSeconds: always above the drain deadline. */}}
{{- define "kchat.terminationGracePeriodSeconds" -}}
{{- $ms := int .Values.shutdownTimeoutMs }}
{{- if or (lt $ms 100) (gt $ms 600000) }}
{{- fail "shutdownTimeoutMs must be within 100..600000 (the daemons' range)" }}
{{- end }}
{{- $extra := int .Values.terminationGraceExtraSeconds }}
{{- if lt $extra 1 }}
{{- fail "terminationGraceExtraSeconds must be at least 1, so the grace period exceeds shutdownTimeoutMs" }}
{{- end }}
{{- add (div (add $ms 999) 1000) $extra }}
{{- end }}

{{/* Partitions of the deliveries topic in .Values.topics (0 when it is not listed). */}}
{{- define "kchat.deliveriesPartitions" -}}
{{- $n := 0 }}
{{- range .Values.topics.topics }}
{{- if eq .name $.Values.gateway.deliveriesTopic }}
{{- $n = int .partitions }}
{{- end }}
{{- end }}
{{- $n }}
{{- end }}

{{/* A CA source ({secretName, configMapName, key}) is set. */}}
{{- define "kchat.caSet" -}}
{{- if and .secretName .configMapName }}
{{- fail "a tls.ca names both a Secret and a ConfigMap: name one" }}
{{- end }}
{{- if or .secretName .configMapName }}true{{ end }}
{{- end }}

{{/* The DSN, with sslrootcert=<mounted CA> when postgres.tls.ca is set. */}}
{{- define "kchat.pgDsn" -}}
{{- $p := .Values.postgres }}
{{- if include "kchat.caSet" $p.tls.ca }}
{{- printf "%s sslrootcert=/etc/kchat/pg-ca/%s" $p.dsn $p.tls.ca.key }}
{{- else }}
{{- $p.dsn }}
{{- end }}
{{- end }}

{{/*
Kafka client settings shared by every daemon and kchatctl. The security variables appear only
when they differ from the daemons' defaults (plaintext, no SASL, system CAs).
*/}}
{{- define "kchat.kafkaEnv" -}}
{{- $k := .Values.kafka }}
{{- $env := dict "KCHAT_KAFKA_BROKERS" $k.brokers }}
{{- if ne $k.securityProtocol "plaintext" }}
{{- $_ := set $env "KCHAT_KAFKA_SECURITY_PROTOCOL" $k.securityProtocol }}
{{- end }}
{{- if hasPrefix "sasl_" $k.securityProtocol }}
{{- if not (and $k.sasl.username $k.sasl.existingSecret) }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.username and kafka.sasl.existingSecret" $k.securityProtocol) }}
{{- end }}
{{- $_ := set $env "KCHAT_KAFKA_SASL_MECHANISM" $k.sasl.mechanism }}
{{- $_ := set $env "KCHAT_KAFKA_SASL_USERNAME" $k.sasl.username }}
{{- end }}
{{- if hasSuffix "ssl" $k.securityProtocol }}
{{- if include "kchat.caSet" $k.tls.ca }}
{{- $_ := set $env "KCHAT_KAFKA_SSL_CA_LOCATION" (printf "/etc/kchat/kafka-ca/%s" $k.tls.ca.key) }}
{{- end }}
{{- if $k.tls.clientCertSecret }}
{{- $_ := set $env "KCHAT_KAFKA_SSL_CERTIFICATE_LOCATION" "/etc/kchat/kafka-client/tls.crt" }}
{{- $_ := set $env "KCHAT_KAFKA_SSL_KEY_LOCATION" "/etc/kchat/kafka-client/tls.key" }}
{{- end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
Environment of a daemon, as a sorted list without duplicates: the chart's settings, then the
global .Values.env, then the component's env (the last one wins); then the secrets.
Call with (dict "root" $ "component" "api" "base" (dict ...) "pg" true "redis" true "s3" true "instanceId" true
"webhook" true "archive" true).
*/}}
{{- define "kchat.env" -}}
{{- $v := .root.Values }}
{{- $env := dict
  "KCHAT_LOG_LEVEL" $v.logLevel
  "KCHAT_SHUTDOWN_TIMEOUT_MS" (toString (int $v.shutdownTimeoutMs)) }}
{{- $env = mergeOverwrite $env (include "kchat.kafkaEnv" .root | fromYaml) }}
{{- if .pg }}
{{- $_ := set $env "KCHAT_PG_DSN" (include "kchat.pgDsn" .root) }}
{{- end }}
{{- if .redis }}
{{- $_ := set $env "KCHAT_REDIS_HOST" $v.redis.host }}
{{- $_ := set $env "KCHAT_REDIS_PORT" (toString (int $v.redis.port)) }}
{{- $_ := set $env "KCHAT_REDIS_TIMEOUT_MS" (toString (int $v.redis.timeoutMs)) }}
{{- with $v.redis.username }}{{ $_ := set $env "KCHAT_REDIS_USERNAME" . }}{{ end }}
{{- end }}
{{- /* The registry needs no registry; the archiver copies records as they are, decoding none. */}}
{{- if not (has .component (list "registry" "archiver")) }}
{{- $_ := set $env "KCHAT_SCHEMA_REGISTRY_URL" (include "kchat.schemaRegistryUrl" .root) }}
{{- end }}
{{- $env = mergeOverwrite $env .base }}
{{- $env = mergeOverwrite $env ($v.env | default dict) }}
{{- $env = mergeOverwrite $env ((index $v .component).env | default dict) }}
{{- if and .instanceId (hasKey $env "KCHAT_INSTANCE_ID") }}
{{- fail (printf "%s: KCHAT_INSTANCE_ID is the pod's name, unique per replica; do not set it in env" .component) }}
{{- end }}
{{- range $k, $val := $env }}
- name: {{ $k }}
  value: {{ toString $val | quote }}
{{- end }}
{{- if .instanceId }}
# Unique per pod and stable for its life: the pod's name.
- name: KCHAT_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- include "kchat.secretEnv" . }}
{{- end }}

{{/* The schema registry the daemons check at start: schemaRegistryUrl, or this release's. */}}
{{- /* The TCP port of a URL: the one it names, else 443 for https and 80 for http. */}}
{{- define "kchat.urlPort" -}}
{{- $u := urlParse . }}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" $u.host) }}
{{- if not $port }}{{ $port = ternary "443" "80" (eq (lower $u.scheme) "https") }}{{ end }}
{{- $port }}
{{- end }}

{{- define "kchat.schemaRegistryUrl" -}}
{{- .Values.schemaRegistryUrl | default (printf "http://%s-registry:%d" (include "kchat.fullname" .) (int .Values.registry.port)) }}
{{- end }}

{{/* The variables that come from Secrets. Same arguments as kchat.env. */}}
{{- define "kchat.secretEnv" -}}
{{- $v := .root.Values }}
{{- if and (hasPrefix "sasl_" $v.kafka.securityProtocol) $v.kafka.sasl.existingSecret }}
- name: KCHAT_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.kafka.sasl.existingSecret }}
      key: {{ $v.kafka.sasl.passwordKey }}
{{- end }}
{{- if and .pg $v.postgres.existingSecret }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.postgres.existingSecret }}
      key: {{ $v.postgres.passwordKey }}
{{- end }}
{{- if and .redis $v.redis.existingSecret }}
- name: KCHAT_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.redis.existingSecret }}
      key: {{ $v.redis.passwordKey }}
{{- end }}
{{- if and .webhook $v.notifier.webhooks.existingSecret }}
- name: KCHAT_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $v.notifier.webhooks.existingSecret }}
      key: {{ $v.notifier.webhooks.secretKey }}
{{- end }}
{{- /* The attachments' key pair (s3), or the archive's: archiver.existingSecret, else s3's. */}}
{{- $s3 := $v.s3 }}
{{- if and .archive $v.archiver.existingSecret }}{{ $s3 = $v.archiver }}{{ end }}
{{- if and (or .s3 .archive) $s3.existingSecret }}
- name: KCHAT_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3.existingSecret }}
      key: {{ $s3.accessKeyKey }}
- name: KCHAT_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3.existingSecret }}
      key: {{ $s3.secretKeyKey }}
{{- end }}
{{- end }}

{{/* Token settings; the keys are mounted from .Values.jwt.existingSecret at /etc/kchat/jwt. */}}
{{- define "kchat.jwtEnv" -}}
{{- if not .Values.jwt.existingSecret }}
{{- fail "jwt.existingSecret must name the Secret holding jwt-private.pem and jwt-public.pem" }}
{{- end }}
{{- dict "KCHAT_JWT_PUBLIC_KEY" "/etc/kchat/jwt/jwt-public.pem" "KCHAT_JWT_ISSUER" .Values.jwt.issuer "KCHAT_JWT_AUDIENCE" .Values.jwt.audience | toYaml }}
{{- end }}

{{/* Mounts of the CA files and the Kafka client certificate. Call with (dict "root" $ "pg" bool). */}}
{{- define "kchat.tlsVolumeMounts" -}}
{{- $v := .root.Values }}
{{- if and (hasSuffix "ssl" $v.kafka.securityProtocol) (include "kchat.caSet" $v.kafka.tls.ca) }}
- name: kafka-ca
  mountPath: /etc/kchat/kafka-ca
  readOnly: true
{{- end }}
{{- if and (hasSuffix "ssl" $v.kafka.securityProtocol) $v.kafka.tls.clientCertSecret }}
- name: kafka-client
  mountPath: /etc/kchat/kafka-client
  readOnly: true
{{- end }}
{{- if and .pg (include "kchat.caSet" $v.postgres.tls.ca) }}
- name: pg-ca
  mountPath: /etc/kchat/pg-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "kchat.caVolume" -}}
{{- if .ca.secretName }}
- name: {{ .name }}
  secret:
    secretName: {{ .ca.secretName }}
    items:
      - key: {{ .ca.key }}
        path: {{ .ca.key }}
{{- else if .ca.configMapName }}
- name: {{ .name }}
  configMap:
    name: {{ .ca.configMapName }}
    items:
      - key: {{ .ca.key }}
        path: {{ .ca.key }}
{{- end }}
{{- end }}

{{- define "kchat.tlsVolumes" -}}
{{- $v := .root.Values }}
{{- if hasSuffix "ssl" $v.kafka.securityProtocol }}
{{- include "kchat.caVolume" (dict "name" "kafka-ca" "ca" $v.kafka.tls.ca) }}
{{- with $v.kafka.tls.clientCertSecret }}
- name: kafka-client
  secret:
    secretName: {{ . }}
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
{{- end }}
{{- end }}
{{- if .pg }}
{{- include "kchat.caVolume" (dict "name" "pg-ca" "ca" $v.postgres.tls.ca) }}
{{- end }}
{{- end }}

{{/* Pod annotations: Prometheus scraping plus the component's own. Call with (dict "root" $ "port" 9095 "extra" map). */}}
{{- define "kchat.podAnnotations" -}}
{{- if .root.Values.prometheusAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Startup, readiness and liveness probes on GET /health of the named port. The startup probe
is probes.startup with the component's startupProbe merged over it; liveness and readiness
start once it has passed. Call with (dict "root" $ "port" "ops" "startup" map), and
"startupPath" "/live" for a daemon whose /health may fail for a reason a restart cannot cure.
*/}}
{{- define "kchat.probes" -}}
startupProbe:
  httpGet:
    path: {{ .startupPath | default "/health" }}
    port: {{ .port }}
  {{- toYaml (mergeOverwrite (deepCopy .root.Values.probes.startup) (.startup | default dict)) | nindent 2 }}
readinessProbe:
  httpGet:
    path: /health
    port: {{ .port }}
  {{- toYaml .root.Values.probes.readiness | nindent 2 }}
livenessProbe:
  httpGet:
    path: /live
    port: {{ .port }}
  {{- toYaml .root.Values.probes.liveness | nindent 2 }}
{{- end }}

{{/*
What every pod shares. Service links are off: Kubernetes would otherwise inject
<SERVICE>_PORT=tcp://... variables, and a Service named e.g. "kchat-redis" would set
KCHAT_REDIS_PORT, which the daemons read as their own option and refuse.
*/}}
{{- define "kchat.podCommon" -}}
enableServiceLinks: false
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{- define "kchat.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The Origins the gateways accept: gateway.allowedOrigins, else the ingress hosts. */}}
{{- define "kchat.allowedOrigins" -}}
{{- $origins := list }}
{{- range .Values.gateway.allowedOrigins }}{{ $origins = append $origins . }}{{ end }}
{{- if and (not $origins) .Values.ingress.enabled }}
{{- $scheme := ternary "https" "http" (gt (len .Values.ingress.tls) 0) }}
{{- range .Values.ingress.hosts }}{{ $origins = append $origins (printf "%s://%s" $scheme .) }}{{ end }}
{{- end }}
{{- join "," $origins }}
{{- end }}

{{/* A PodDisruptionBudget. Call with (dict "root" $ "component" "api"). */}}
{{- define "kchat.pdb" -}}
{{- $c := index .root.Values .component }}
{{- if $c.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "kchat.fullname" .root }}-{{ .component }}
  labels:
    {{- include "kchat.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $c.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "kchat.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}
