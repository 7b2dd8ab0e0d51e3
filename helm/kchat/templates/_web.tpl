{{/*
nginx.conf of the web container in each API pod: the part of the local ingress
(web/nginx.conf.in) that serves the client and the REST paths, with the same bounds. /ws does
not come here (the Ingress sends it to the gateways). Everything writable is under /tmp (an
emptyDir), so the root filesystem stays read-only and nginx runs as any uid.
*/}}
{{- define "kchat.webConfig" -}}
{{- $w := .Values.web -}}
{{- /* The object store's origin (s3.endpoint, which the API's presigned URLs name): the page
       uploads attachments to it and shows their thumbnails from it. */ -}}
{{- $s3 := "" -}}
{{- with .Values.s3.endpoint -}}
{{- $u := urlParse . -}}
{{- if not (and (has $u.scheme (list "http" "https")) (regexMatch "^([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?$" $u.host)) -}}
{{- fail (printf "s3.endpoint must be an http(s) URL, not %q" .) -}}
{{- end -}}
{{- $s3 = printf " %s://%s" $u.scheme (lower $u.host) -}}
{{- end -}}
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr notice;

events {
    worker_connections 4096;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;

    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;

    # The client's address from the ingress controller's X-Forwarded-For.
    {{- range $w.realIpFrom }}
    set_real_ip_from {{ . }};
    {{- end }}
    real_ip_header X-Forwarded-For;
    real_ip_recursive on;

    # $uri, not $request: no query string reaches the log.
    log_format kchat '$remote_addr [$time_iso8601] "$request_method $uri $server_protocol" '
                     '$status $body_bytes_sent $request_time upstream_status=$upstream_status';
    access_log /dev/stdout kchat;

    sendfile on;
    server_tokens off;
    # The local ingress's bounds: a request header of at most 1 KiB plus three buffers of
    # 4 KiB (431 beyond), 10 s for a header and between pieces of a body (408), and
    # connections per client address on the REST paths (429): kchat-api trusts this proxy
    # and leaves these bounds to it.
    client_header_buffer_size 1k;
    large_client_header_buffers 3 4k;
    client_header_timeout 10s;
    client_body_timeout 10s;
    limit_conn_zone $binary_remote_addr zone=kchat_api_addr:1m;
    limit_conn_status 429;
    keepalive_timeout 65s;
    # kchat-api refuses bodies over its --max-body-bytes itself (413, JSON).
    client_max_body_size 1m;

    gzip on;
    gzip_types text/css application/javascript application/json image/svg+xml;

    upstream kchat_api {
        server 127.0.0.1:{{ .Values.api.port }} max_fails=0;
        keepalive 16;
    }

    server {
        listen {{ $w.port }};
        server_name _;
        root {{ $w.root }};

        add_header X-Content-Type-Options nosniff always;
        add_header Referrer-Policy no-referrer always;
        add_header X-Frame-Options DENY always;
        # the object store's origin (s3.endpoint), when there is one, is the only other one the
        # page may reach: attachments are uploaded and shown through its presigned URLs
        add_header Content-Security-Policy "default-src 'self'; connect-src 'self'{{ $s3 }}; img-src 'self' data:{{ $s3 }}; style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'" always;

        # The REST paths of docs/openapi.yaml, as the local ingress routes them.
        location /auth/         { include /etc/kchat/nginx/proxy-api.conf; }
        location = /conversations { include /etc/kchat/nginx/proxy-api.conf; }
        location /conversations/ { include /etc/kchat/nginx/proxy-api.conf; }
        location = /search      { include /etc/kchat/nginx/proxy-api.conf; }
        location /attachments/  { include /etc/kchat/nginx/proxy-api.conf; }
        location = /users       { include /etc/kchat/nginx/proxy-api.conf; }
        location /users/        { include /etc/kchat/nginx/proxy-api.conf; }
        location /push/         { include /etc/kchat/nginx/proxy-api.conf; }
        location /admin/        { include /etc/kchat/nginx/proxy-api.conf; }
        location = /health      { include /etc/kchat/nginx/proxy-api.conf; }

        location = /metrics {
            default_type application/json;
            return 404 '{"error":{"code":"not_found","message":"metrics are served on the operations port of each daemon, not on the ingress"}}';
        }

        # Vite names the bundles by content hash: cache them for good.
        location /assets/ {
            expires max;
            try_files $uri =404;
        }

        location / {
            expires -1;
            try_files $uri /index.html;
        }

        error_page 494 =431 @header_too_large;
        location @header_too_large {
            default_type application/json;
            return 431 '{"error":{"code":"header_too_large","message":"the request header is too large"}}';
        }

        location @too_many_connections {
            default_type application/json;
            return 429 '{"error":{"code":"too_many_connections","message":"too many requests at once from this address"}}';
        }

        location @unavailable {
            default_type application/json;
            return 503 '{"error":{"code":"unavailable","message":"the service is not reachable; try again shortly"}}';
        }
    }
}
{{- end }}

{{/* The proxy settings of each REST location (web/nginx-proxy-api.conf). */}}
{{- define "kchat.webProxyApi" -}}
limit_conn kchat_api_addr {{ .Values.web.maxConnsPerAddress }};
proxy_pass http://kchat_api;
proxy_http_version 1.1;
proxy_set_header Connection "";
proxy_set_header Host $host;
# After real_ip, $remote_addr is the client: kchat-api (trusting 127.0.0.1) reads it here.
proxy_set_header X-Forwarded-For $remote_addr;
proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;
proxy_connect_timeout 5s;
proxy_read_timeout 30s;
error_page 502 503 504 = @unavailable;
error_page 429 = @too_many_connections;
{{- end }}
