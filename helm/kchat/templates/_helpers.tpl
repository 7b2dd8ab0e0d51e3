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

{{- define "kchat.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
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

{{/*
Environment of a daemon, as a sorted list without duplicates: the chart's settings, then the
global .Values.env, then the component's env (the last one wins). PGPASSWORD comes from a Secret.
Call with (dict "root" $ "component" "api" "base" (dict ...) "pg" true).
*/}}
{{- define "kchat.env" -}}
{{- $v := .root.Values }}
{{- $env := dict
  "KCHAT_LOG_LEVEL" $v.logLevel
  "KCHAT_SHUTDOWN_TIMEOUT_MS" (toString (int $v.shutdownTimeoutMs))
  "KCHAT_KAFKA_BROKERS" $v.kafka.brokers }}
{{- $env = mergeOverwrite $env .base }}
{{- $env = mergeOverwrite $env ($v.env | default dict) }}
{{- $env = mergeOverwrite $env ((index $v .component).env | default dict) }}
{{- range $k, $val := $env }}
- name: {{ $k }}
  value: {{ toString $val | quote }}
{{- end }}
{{- if and .pg $v.postgres.passwordSecret.name }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.postgres.passwordSecret.name }}
      key: {{ $v.postgres.passwordSecret.key }}
{{- end }}
{{- if and .s3 $v.s3.credentialsSecret.name }}
- name: KCHAT_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.s3.credentialsSecret.name }}
      key: {{ $v.s3.credentialsSecret.accessKeyKey }}
- name: KCHAT_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.s3.credentialsSecret.name }}
      key: {{ $v.s3.credentialsSecret.secretKeyKey }}
{{- end }}
{{- end }}

{{/* Token settings; the keys are mounted from .Values.jwt.secretName at /etc/kchat/jwt. */}}
{{- define "kchat.jwtEnv" -}}
{{- if not .Values.jwt.secretName }}
{{- fail "jwt.secretName must name the Secret holding jwt-private.pem and jwt-public.pem" }}
{{- end }}
{{- dict "KCHAT_JWT_PUBLIC_KEY" "/etc/kchat/jwt/jwt-public.pem" "KCHAT_JWT_ISSUER" .Values.jwt.issuer "KCHAT_JWT_AUDIENCE" .Values.jwt.audience | toYaml }}
{{- end }}

{{/* Postgres and Redis settings, for the daemons that use them. */}}
{{- define "kchat.pgEnv" -}}
{{- dict "KCHAT_PG_DSN" .Values.postgres.dsn | toYaml }}
{{- end }}

{{- define "kchat.redisEnv" -}}
{{- dict "KCHAT_REDIS_HOST" .Values.redis.host "KCHAT_REDIS_PORT" (toString (int .Values.redis.port)) "KCHAT_REDIS_TIMEOUT_MS" (toString (int .Values.redis.timeoutMs)) | toYaml }}
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

{{/* Readiness and liveness probes on GET /health of the named port. */}}
{{- define "kchat.probes" -}}
readinessProbe:
  httpGet:
    path: /health
    port: {{ .port }}
  {{- toYaml .root.Values.probes.readiness | nindent 2 }}
livenessProbe:
  httpGet:
    path: /health
    port: {{ .port }}
  {{- toYaml .root.Values.probes.liveness | nindent 2 }}
{{- end }}

{{/*
What every daemon pod shares. Service links are off: Kubernetes would otherwise inject
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
{{- end }}
