"""The Helm chart helm/kchat: it lints, renders with the default values and with
helm/kchat/values-production.yaml, every rendered document is valid for the two newest
Kubernetes versions kubectl-validate knows offline (ServiceMonitor and PrometheusRule against
the Prometheus Operator's CRDs), and the rendered objects keep the chart's promises: values
are checked by values.schema.json, browsers are let in, /metrics never leaves through the
Ingress, each API pod has an instance id of its own, the processor may restore for 300 s
before liveness counts, pods are "restricted", secrets come from existing Secrets.

helm and kubectl-validate are built from their Go modules by scripts/helm-tools.sh (once,
into ~/.cache/kchat). Needs no running stack:

  .venv/bin/python -m pytest tests/system/deploy/test_helm.py -q -p no:cacheprovider
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

if os.environ.get("SANITIZE") == "1":
    # The chart is the same for the sanitizer build: its checks ran in the first pass.
    pytest.skip("chart checks run in the plain pass only", allow_module_level=True)

pytestmark = pytest.mark.nostack

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "kchat"
PRODUCTION = CHART / "values-production.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
RELEASE = "chat"
FULL = f"{RELEASE}-kchat"
DAEMONS = ("gateway", "processor", "projector", "notifier", "api")
# Beside DAEMONS, with their own checks: the registry (no Kafka) and the archiver (Kafka and the
# object store only; rendered where an object store is set, as in values-production.yaml).
OTHERS = ("registry", "archiver")


@pytest.fixture(scope="session")
def tools():
    """Paths of helm, kubectl-validate, the CRD folder, and the Kubernetes versions."""
    r = subprocess.run([str(ROOT / "scripts" / "helm-tools.sh"), "paths"],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        hint = ("" if shutil.which("go") else
                "Go is not on PATH: the chart's tests need it once, to build helm and "
                "kubectl-validate into ~/.cache/kchat (apt-get install golang).\n")
        pytest.fail(f"{hint}scripts/helm-tools.sh failed:\n{r.stderr[-3000:]}")
    out = dict(line.split("=", 1) for line in r.stdout.strip().splitlines())
    out["KUBE_VERSIONS"] = out["KUBE_VERSIONS"].split()
    return out


@pytest.fixture(scope="session")
def chart(tmp_path_factory):
    """The chart as it will be packaged. files/monitoring links to the repository's
    monitoring/ once that exists; until then a copy of the chart gets the small rule file and
    dashboard of tests/system/deploy/fixtures, so the PrometheusRule and dashboards render."""
    if (CHART / "files" / "monitoring" / "prometheus" / "alerts.yml").is_file():
        return CHART
    copy = tmp_path_factory.mktemp("chart") / "kchat"
    shutil.copytree(CHART, copy, symlinks=False)
    shutil.rmtree(copy / "files" / "monitoring", ignore_errors=True)
    shutil.copytree(FIXTURES / "monitoring", copy / "files" / "monitoring")
    return copy


def helm(tools, *args, check=True):
    r = subprocess.run([tools["HELM"], *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r


def render_text(tools, chart, *args):
    return helm(tools, "template", RELEASE, str(chart), "--namespace", "chat", *args).stdout


def render(tools, chart, *args):
    """The rendered documents, in order."""
    return [d for d in yaml.safe_load_all(render_text(tools, chart, *args)) if d]


def refused(tools, chart, *args):
    """helm template's error output; fails the test if it rendered."""
    r = helm(tools, "template", RELEASE, str(chart), *args, check=False)
    assert r.returncode != 0, f"helm template {' '.join(args)} rendered, but should not"
    return r.stderr


def find(docs, kind, name=None):
    got = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert got, f"no {kind} {name or ''} rendered"
    return got


def workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def container(docs, component, name=None):
    kind = "StatefulSet" if component in ("gateway", "processor") else "Deployment"
    spec = find(docs, kind, f"{FULL}-{component}")[0]["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == (name or component))


def env_of(c):
    return {e["name"]: e for e in c.get("env", [])}


def production_args():
    return ["-f", str(PRODUCTION)]


# -- lint, render, validate ------------------------------------------------------------------

def test_monitoring_files_are_the_repositorys_not_a_copy():
    """Once monitoring/ exists, the chart reads it through the link files/monitoring (helm
    lint, template and package follow it), never through a copy that would drift. A link
    to a missing folder fails every helm command, so it comes with monitoring/."""
    link = CHART / "files" / "monitoring"
    if (ROOT / "monitoring").is_dir():
        assert link.is_symlink() and os.readlink(link) == "../../../monitoring", (
            "monitoring/ exists: link it into the chart with "
            "`ln -s ../../../monitoring helm/kchat/files/monitoring`")
    else:
        assert not link.exists() and not link.is_symlink(), (
            "helm/kchat/files/monitoring must be the link to ../../../monitoring, which does not exist yet")


@pytest.mark.parametrize("values", ["default", "production"])
def test_lint_strict(tools, chart, values):
    args = production_args() if values == "production" else []
    r = helm(tools, "lint", "--strict", str(chart), *args)
    assert "0 chart(s) failed" in r.stdout


def test_package(tools, chart, tmp_path):
    helm(tools, "package", str(chart), "-d", str(tmp_path))
    assert list(tmp_path.glob("kchat-*.tgz"))


@pytest.mark.parametrize("values", ["default", "production", "minimal"])
def test_every_rendered_document_is_valid(tools, chart, values, tmp_path):
    """kubectl-validate, offline, against each of the two newest Kubernetes versions it has
    built-in schemas for; ServiceMonitor and PrometheusRule against the Prometheus
    Operator's CRDs (scripts/helm-tools.sh). No kind is skipped."""
    args = {"default": [], "production": production_args(),
            "minimal": ["--set", "web.enabled=false,ingress.enabled=true,init.enabled=false"]}[values]
    text = render_text(tools, chart, *args)
    kinds = {d["kind"] for d in yaml.safe_load_all(text) if d}
    if values == "production":
        assert {"ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler", "NetworkPolicy",
                "PodDisruptionBudget", "Ingress"} <= kinds, kinds
    out = tmp_path / "rendered.yaml"
    out.write_text(text)
    for version in tools["KUBE_VERSIONS"]:
        r = subprocess.run([tools["KUBECTL_VALIDATE"], str(out), "--version", version,
                            "--local-crds", tools["CRDS"]],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"Kubernetes {version}:\n{r.stdout}{r.stderr}"


def test_kubectl_validate_catches_a_bad_document(tools, tmp_path):
    """The validation above can fail: wrong types and unknown fields, built-in kind or CRD."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
                   "spec: {ports: [{port: web}]}\n---\n"
                   "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: dep}\n"
                   "spec: {bogus: 1}\n---\n"
                   "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\n"
                   "metadata: {name: x}\nspec: {endpoints: [{port: ops, bogus: 1}]}\n")
    r = subprocess.run([tools["KUBECTL_VALIDATE"], str(bad), "--version",
                        tools["KUBE_VERSIONS"][-1], "--local-crds", tools["CRDS"]],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "spec.ports[0].port" in r.stdout + r.stderr
    assert "spec.bogus" in r.stdout + r.stderr
    assert "spec.endpoints[0].bogus" in r.stdout + r.stderr


# -- values.schema.json ----------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["--set", "gateway.replicas=two"], "/gateway/replicas"),
    (["--set", "gatway.replicas=3"], "'gatway' not allowed"),
    (["--set", "api.autoscaling.maxReplica=3"], "'maxReplica' not allowed"),
    (["--set", "kafka.securityProtocol=tls"], "/kafka/securityProtocol"),
    (["--set", "processor.startupProbe.failureThreshold=many"], "/processor/startupProbe/failureThreshold"),
    (["--set-json", "gateway.allowedOrigins=\"https://a.example\""], "/gateway/allowedOrigins"),
    (["--set-json", "ingress.apiPaths=[\"/metrics\"]"], "/ingress/apiPaths/0"),
    (["--set", "networkPolicy.egress.kafka.ports[0]=kafka"], "/networkPolicy/egress/kafka/ports/0"),
    (["--set", "notifier.content=full"], "/notifier/content"),
    (["--set", "notifier.coalesceMs=-1"], "/notifier/coalesceMs"),
    (["--set-json", 'notifier.webhooks.urls=["ftp://hooks.example/x"]'], "/notifier/webhooks/urls/0"),
    (["--set-json", "notifier.webhooks.urls=[" + ",".join(f'"https://h{i}.example/"' for i in range(9)) + "]"],
     "/notifier/webhooks/urls"),
    (["--set", "notifier.vapidSubject=admin@example.com"], "/notifier/vapidSubject"),
    (["--set", "push.privateKey=x"], "'privateKey' not allowed"),
])
def test_schema_refuses_bad_values(tools, chart, args, says):
    err = refused(tools, chart, *args)
    assert "schema" in err and says in err, err


def test_schema_accepts_both_values_files():
    import jsonschema
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    for f in (CHART / "values.yaml", PRODUCTION):
        jsonschema.Draft7Validator(schema).validate(yaml.safe_load(f.read_text()))


# -- what the rendered objects promise -------------------------------------------------------

def test_nothing_renders_nil(tools, chart):
    for args in ([], production_args(), ["--set", "ingress.enabled=true"]):
        text = render_text(tools, chart, *args)
        assert "<nil>" not in text and "%!" not in text, args


def test_allowed_origins(tools, chart):
    def origins(*args):
        return env_of(container(render(tools, chart, *args), "gateway"))["KCHAT_ALLOWED_ORIGINS"]["value"]
    # No ingress, no origins: every browser is refused (the gateway's documented default).
    assert origins() == ""
    # With an ingress, its hosts; https with TLS.
    assert origins("--set", "ingress.enabled=true") == "http://chat.example.com"
    assert origins(*production_args()) == "https://chat.example.com"
    assert origins("--set-json", 'gateway.allowedOrigins=["https://a.example","http://localhost:5173"]') \
        == "https://a.example,http://localhost:5173"


def reaches(path, path_type, target="/metrics"):
    """Whether an Ingress path matches the request path target."""
    if path_type == "Exact":
        return path == target
    p = path.rstrip("/")
    return p == "" or target == p or target.startswith(p + "/")


def metrics_ports(docs):
    """(service, port name) pairs whose listener serves /metrics."""
    out = set()
    for s in find(docs, "Service"):
        for p in s["spec"]["ports"]:
            if p["name"] in ("ops", "http"):
                out.add((s["metadata"]["name"], p["name"]))
    return out


def web_config(docs):
    cm = find(docs, "ConfigMap", f"{FULL}-web")[0]["data"]
    return cm["nginx.conf"], cm["proxy-api.conf"]


@pytest.mark.parametrize("args", [["--set", "ingress.enabled=true"], production_args(),
                                  ["--set", "ingress.enabled=true,web.enabled=false"]])
def test_no_ingress_path_reaches_metrics(tools, chart, args):
    docs = render(tools, chart, *args)
    serving = metrics_ports(docs)
    assert (f"{FULL}-api", "http") in serving and (f"{FULL}-processor", "ops") in serving
    routes = 0
    for ing in find(docs, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                routes += 1
                svc = p["backend"]["service"]
                target = (svc["name"], svc["port"]["name"])
                if target in serving:
                    assert not reaches(p["path"], p["pathType"]), (
                        f"{ing['metadata']['name']}: {p['path']} ({p['pathType']}) reaches "
                        f"/metrics of {target}")
                elif target == (f"{FULL}-gateway", "ws"):
                    # The gateways' WebSocket listener answers only GET /ws.
                    assert (p["path"], p["pathType"]) == ("/ws", "Exact")
                elif target == (f"{FULL}-api", "web"):
                    # The web container refuses /metrics and proxies no location matching it.
                    conf, _ = web_config(docs)
                    m = re.search(r"location = /metrics \{(.*?)\}", conf, re.S)
                    assert m and "return 404" in m.group(1)
                    for loc in re.findall(r"location (=?\s*/[^\s{]*)\s*\{[^}]*proxy-api", conf):
                        exact = loc.startswith("=")
                        assert not reaches(loc.lstrip("= "), "Exact" if exact else "Prefix"), loc
                else:
                    pytest.fail(f"an Ingress routes to {target}, which this test does not know")
    assert routes >= 2


def test_web_container_serves_every_rest_path_of_openapi(tools, chart):
    """The web container's REST locations are the local ingress's (web/nginx.conf.in), and
    together they cover every path of docs/openapi.yaml but /metrics."""
    conf, proxy = web_config(render(tools, chart))
    ours = set(re.findall(r"location (=?\s*/[^\s{]*)\s*\{\s*include /etc/kchat/nginx/proxy-api.conf", conf))
    local = set(re.findall(r"location (=?\s*/[^\s{]*)\s*\{\s*include @DIR@/proxy-api.conf",
                           (ROOT / "web" / "nginx.conf.in").read_text()))
    assert ours and ours == local, (ours ^ local)
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    for path in spec["paths"]:
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        hit = any(concrete == loc[1:].strip() if loc.startswith("=") else concrete.startswith(loc)
                  for loc in ours)
        assert hit == (path != "/metrics"), f"{path}: {'not ' if not hit else ''}proxied"
    # The local ingress's bounds.
    assert "limit_conn kchat_api_addr 32;" in proxy
    for bound in ("client_header_timeout 10s;", "client_body_timeout 10s;",
                  "large_client_header_buffers 3 4k;", "limit_conn_status 429;"):
        assert bound in conf, bound


def write_web_config(folder, conf, proxy):
    """The web container's files in folder, with its paths (/tmp/..., /etc/kchat/nginx/...)
    moved there."""
    (folder / "proxy-api.conf").write_text(proxy)
    conf = re.sub(r"(?<=\s)/tmp/(?=(nginx\.pid|client_body|proxy|fastcgi|uwsgi|scgi);)", f"{folder}/", conf)
    conf = conf.replace("/etc/kchat/nginx/", f"{folder}/")
    assert " /tmp/" not in conf.replace(str(folder), "")
    (folder / "nginx.conf").write_text(conf)


def test_web_config_is_valid_nginx(tools, chart, tmp_path):
    nginx = shutil.which("nginx") or (Path("/usr/sbin/nginx") if Path("/usr/sbin/nginx").exists() else None)
    if not nginx or not Path("/etc/nginx/mime.types").exists():
        pytest.skip("nginx is not installed")
    conf, proxy = web_config(render(tools, chart))
    write_web_config(tmp_path, conf, proxy)
    r = subprocess.run([str(nginx), "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_web_container_behaves(tools, chart, tmp_path):
    """The rendered nginx.conf, run by this machine's nginx against a stand-in for kchat-api:
    the client for any page, the REST paths forwarded with the client's address (from a
    trusted X-Forwarded-For), /metrics refused without reaching the API, 431 for a header
    too large."""
    import http.client
    import http.server
    import threading
    import time

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not nginx or not Path("/etc/nginx/mime.types").exists():
        pytest.skip("nginx is not installed")
    api_port, web_port = free_port(), free_port()
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>kchat</title>")
    docs = render(tools, chart, "--set", f"api.port={api_port},web.port={web_port},web.root={root}",
                  "--set-json", 'web.realIpFrom=["127.0.0.1"]')
    conf, proxy = web_config(docs)
    write_web_config(tmp_path, conf, proxy)

    seen = []

    class Api(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            seen.append((self.path, self.headers.get("X-Forwarded-For")))
            body = b'{"status":"ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    api = http.server.ThreadingHTTPServer(("127.0.0.1", api_port), Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    # As root, nginx hands its workers to nobody, who cannot read pytest's folders.
    glob = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    proc = subprocess.Popen([nginx, "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                             "-g", glob], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def get(path, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", web_port, timeout=5)
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        out = (r.status, r.read().decode(), dict(r.getheaders()))
        c.close()
        return out

    try:
        for _ in range(100):
            try:
                get("/index.html")
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"nginx exited: {proc.stderr.read().decode()}")
                time.sleep(0.05)
        status, body, headers = get("/conversations/c1/messages?limit=5",
                                    {"X-Forwarded-For": "203.0.113.7"})
        assert status == 200 and seen[-1] == ("/conversations/c1/messages?limit=5", "203.0.113.7")
        assert get("/health")[0] == 200
        n = len(seen)
        status, body, headers = get("/metrics")
        assert status == 404 and "not_found" in body and len(seen) == n
        status, body, headers = get("/some/deep/link")
        assert status == 200 and "<title>kchat</title>" in body
        assert headers["X-Frame-Options"] == "DENY"
        assert get("/auth/x", {"X-Big": "a" * 6000})[0] == 431
        assert len(seen) == n
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        api.shutdown()


def test_web_csp_names_the_object_store(tools, chart):
    """The page uploads attachments to, and shows thumbnails from, the object store the API
    presigns for (s3.endpoint): its origin joins 'self' in connect-src and img-src only."""
    def csp(*args):
        conf, _ = web_config(render(tools, chart, *args))
        return re.search(r'add_header Content-Security-Policy "([^"]*)"', conf).group(1)
    strict = "style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    assert csp() == f"default-src 'self'; connect-src 'self'; img-src 'self' data:; {strict}"
    assert csp(*production_args()) == ("default-src 'self'; connect-src 'self' https://s3.eu-west-1.amazonaws.com; "
                                       f"img-src 'self' data: https://s3.eu-west-1.amazonaws.com; {strict}")
    assert "connect-src 'self' http://minio.storage:9000;" in csp("--set", "s3.endpoint=http://MinIO.storage:9000/")
    assert "s3.endpoint must be an http(s) URL" in refused(tools, chart, "--set", "s3.endpoint=minio:9000")


@pytest.mark.parametrize("component", ["api", "processor"])
def test_each_pod_has_its_own_instance_id(tools, chart, component):
    docs = render(tools, chart, "--set", f"{component}.replicas=3")
    env = env_of(container(docs, component))
    ref = env["KCHAT_INSTANCE_ID"]
    assert "value" not in ref, ref
    assert ref["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert sum(1 for e in container(docs, component)["env"] if e["name"] == "KCHAT_INSTANCE_ID") == 1
    # Pod names are at most 63 characters: within the option's 1..64.
    err = refused(tools, chart, "--set", f"{component}.env.KCHAT_INSTANCE_ID=0")
    assert "KCHAT_INSTANCE_ID" in err


def probe_budget(p):
    return p.get("initialDelaySeconds", 0) + p["periodSeconds"] * p["failureThreshold"]


def test_startup_probes(tools, chart):
    docs = render(tools, chart)
    for d in DAEMONS:
        c = container(docs, d)
        # the projector's /health fails while a partition is stopped: a restart cures nothing
        want = "/live" if d == "projector" else "/health"
        assert c["startupProbe"]["httpGet"]["path"] == want, d
        assert c["readinessProbe"]["httpGet"]["path"] == "/health", d
    assert probe_budget(container(docs, "processor")["startupProbe"]) >= 300
    env = env_of(container(docs, "processor"))
    assert probe_budget(container(docs, "processor")["startupProbe"]) >= \
        int(env["KCHAT_RESTORE_TIMEOUT_MS"]["value"]) / 1000
    err = refused(tools, chart, "--set", "processor.startupProbe.failureThreshold=10")
    assert "startup probe" in err


def test_pods_are_restricted(tools, chart):
    """Pod Security Standards "restricted", for every pod the chart makes."""
    for docs in (render(tools, chart), render(tools, chart, *production_args())):
        for w in workloads(docs):
            spec = w["spec"]["template"]["spec"]
            psc = spec["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault"
            assert not spec.get("hostNetwork") and not spec.get("hostPID")
            assert spec["automountServiceAccountToken"] is False
            for c in spec["containers"] + spec.get("initContainers", []):
                sc = c["securityContext"]
                name = f"{w['metadata']['name']}/{c['name']}"
                assert sc["allowPrivilegeEscalation"] is False, name
                assert sc["capabilities"]["drop"] == ["ALL"], name
                assert sc["readOnlyRootFilesystem"] is True, name
                assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
                for v in spec.get("volumes", []):
                    assert "hostPath" not in v, name


def test_production_takes_secrets_and_cas_from_existing_objects(tools, chart):
    docs = render(tools, chart, *production_args())
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart creates no Secret"
    for d in DAEMONS:
        c = container(docs, d)
        env = env_of(c)
        assert env["KCHAT_KAFKA_SECURITY_PROTOCOL"]["value"] == "sasl_ssl"
        assert env["KCHAT_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
        assert env["KCHAT_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kchat-kafka"
        ca = env["KCHAT_KAFKA_SSL_CA_LOCATION"]["value"]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert str(Path(ca).parent) in mounts, (d, ca, mounts)
        assert env["KCHAT_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kchat-redis"
        assert env["KCHAT_REDIS_USERNAME"]["value"] == "kchat"
        for e in env.values():
            if re.search(r"PASSWORD|SECRET", e["name"]):
                assert "valueFrom" in e and "value" not in e, e
        if "KCHAT_PG_DSN" in env:
            dsn = env["KCHAT_PG_DSN"]["value"]
            assert "sslmode=verify-full" in dsn
            root = re.search(r"sslrootcert=(\S+)", dsn).group(1)
            assert str(Path(root).parent) in mounts
            assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kchat-pg"
    api = env_of(container(docs, "api"))
    assert api["KCHAT_S3_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "kchat-s3"
    job = find(docs, "Job")[0]["spec"]["template"]["spec"]["containers"][0]
    assert env_of(job)["KCHAT_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kchat-kafka"
    assert "sslrootcert=" in env_of(job)["KCHAT_PG_DSN"]["value"]
    # Default values set none of the new security variables, so today's daemons see no change.
    default = env_of(container(render(tools, chart), "api"))
    assert not [n for n in default if n.startswith("KCHAT_KAFKA_S") or n == "KCHAT_REDIS_PASSWORD"]


def pod_spec(docs, component):
    kind = "StatefulSet" if component in ("gateway", "processor") else "Deployment"
    return find(docs, kind, f"{FULL}-{component}")[0]["spec"]["template"]["spec"]


def secret_file(docs, component, env_name):
    """(Secret name, key) of the file a component's variable env_name names: the Secret
    volume mounted over its folder, and the one key that volume holds."""
    c, spec = container(docs, component), pod_spec(docs, component)
    path = Path(env_of(c)[env_name]["value"])
    mount = next(m for m in c["volumeMounts"] if Path(m["mountPath"]) == path.parent)
    assert mount["readOnly"] is True
    vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])["secret"]
    assert [i["path"] for i in vol["items"]] == [path.name], vol
    return vol["secretName"], vol["items"][0]["key"]


def test_without_push_the_notifier_runs_without_web_push(tools, chart):
    """Default values name no push Secret: the notifier gets no VAPID key and no webhooks
    (it reads chat.events and tells no one), the API no public key (its /push endpoints
    answer 503); nothing mounts a push volume."""
    docs = render(tools, chart)
    env = env_of(container(docs, "notifier"))
    assert (env["KCHAT_ADMIN_PORT"]["value"], env["KCHAT_GROUP_ID"]["value"],
            env["KCHAT_EVENTS_TOPIC"]["value"]) == ("9097", "kchat-notifier", "chat.events")
    assert env["KCHAT_COALESCE_MS"]["value"] == "10000" and env["KCHAT_CONTENT"]["value"] == "preview"
    for name in ("KCHAT_VAPID_PRIVATE_KEY", "KCHAT_VAPID_SUBJECT", "KCHAT_WEBHOOK_URLS",
                 "KCHAT_WEBHOOK_SECRET"):
        assert name not in env, name
    assert "KCHAT_VAPID_PUBLIC_KEY" not in env_of(container(docs, "api"))
    for d in ("notifier", "api"):
        assert "push" not in {v["name"] for v in pod_spec(docs, d).get("volumes", [])}, d


def test_push_keys_and_webhook_secret_come_from_existing_secrets(tools, chart):
    """With push.existingSecret the notifier mounts only the VAPID private key and the API
    only the public one, both from that Secret; the webhook secret is a secretKeyRef. A
    Secret with the private key alone serves the API too (publicKeyKey = privateKeyKey)."""
    docs = render(tools, chart, *production_args())
    assert secret_file(docs, "notifier", "KCHAT_VAPID_PRIVATE_KEY") == ("kchat-push", "vapid-private.pem")
    assert secret_file(docs, "api", "KCHAT_VAPID_PUBLIC_KEY") == ("kchat-push", "vapid-public.pem")
    env = env_of(container(docs, "notifier"))
    assert env["KCHAT_VAPID_SUBJECT"]["value"] == "mailto:chat-ops@example.com"
    assert env["KCHAT_WEBHOOK_URLS"]["value"] == "https://push-gateway.example.com/kchat"
    assert env["KCHAT_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == \
        {"name": "kchat-webhook", "key": "webhook-secret"}
    docs = render(tools, chart, "--set", "push.existingSecret=vapid,push.privateKeyKey=key.pem,"
                  "push.publicKeyKey=key.pem,notifier.vapidSubject=https://chat.example.com/contact",
                  "--set-json", 'notifier.webhooks.urls=["https://a.example/h","http://b.example:8080/h"]',
                  "--set", "notifier.webhooks.existingSecret=hooks,notifier.webhooks.secretKey=s")
    assert secret_file(docs, "notifier", "KCHAT_VAPID_PRIVATE_KEY") == ("vapid", "key.pem")
    assert secret_file(docs, "api", "KCHAT_VAPID_PUBLIC_KEY") == ("vapid", "key.pem")
    env = env_of(container(docs, "notifier"))
    assert env["KCHAT_WEBHOOK_URLS"]["value"] == "https://a.example/h,http://b.example:8080/h"
    assert env["KCHAT_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "hooks", "key": "s"}
    # Web Push on needs a contact; webhooks need their signing secret.
    assert "notifier.vapidSubject" in refused(tools, chart, "--set", "push.existingSecret=vapid")
    assert "notifier.webhooks.existingSecret" in refused(
        tools, chart, "--set-json", 'notifier.webhooks.urls=["https://a.example/h"]')


def test_the_notifier_may_reach_its_webhooks(tools, chart):
    """The port of each webhook URL that networkPolicy.egress.push does not open is opened
    too (http's 80 when the URL names none), to any address."""
    docs = render(tools, chart, "--set", "networkPolicy.enabled=true,notifier.webhooks.existingSecret=hooks",
                  "--set-json", 'notifier.webhooks.urls=["https://a.example/h","http://b.example/h",'
                  '"https://c.example:8443/h","http://[fd00::1]:9000/h"]')
    np = find(docs, "NetworkPolicy", f"{FULL}-notifier")[0]
    rules = [sorted(p["port"] for p in r["ports"]) for r in np["spec"]["egress"] if "to" not in r]
    assert sorted(rules) == [[80, 8443, 9000], [443], [5432], [6379], [9092]], rules


def test_the_archiver_runs_where_an_object_store_is_set(tools, chart):
    """The archiver is rendered only with an object store (archiver.endpoint, else s3.endpoint)
    and archiver.enabled; it gets its bucket, prefix and topics, the key pair of
    archiver.existingSecret (else s3.existingSecret's), a spool on an emptyDir, and no
    schema registry (it decodes nothing); it reaches DNS, Kafka and S3 only."""
    def archivers(*args):
        return [d for d in render(tools, chart, *args) if d["metadata"]["name"] == f"{FULL}-archiver"]
    assert archivers() == []
    assert archivers("--set", "s3.endpoint=http://minio:9000,archiver.enabled=false") == []
    docs = render(tools, chart, "--set", "s3.endpoint=http://minio:9000,s3.existingSecret=att")
    assert {d["kind"] for d in docs if d["metadata"]["name"] == f"{FULL}-archiver"} == {
        "Deployment", "Service", "PodDisruptionBudget"}
    c, spec = container(docs, "archiver"), pod_spec(docs, "archiver")
    env = env_of(c)
    assert find(docs, "Deployment", f"{FULL}-archiver")[0]["spec"]["replicas"] == 1
    assert {k: env[k]["value"] for k in (
        "KCHAT_ADMIN_PORT", "KCHAT_GROUP_ID", "KCHAT_ARCHIVE_TOPICS", "KCHAT_S3_ENDPOINT",
        "KCHAT_S3_REGION", "KCHAT_S3_BUCKET", "KCHAT_ARCHIVE_PREFIX", "KCHAT_ROLL_BYTES",
        "KCHAT_ROLL_AGE_S")} == {
        "KCHAT_ADMIN_PORT": "9099", "KCHAT_GROUP_ID": "kchat-archiver",
        "KCHAT_ARCHIVE_TOPICS": "chat.events,chat.accounts,chat.audit",
        "KCHAT_S3_ENDPOINT": "http://minio:9000", "KCHAT_S3_REGION": "us-east-1",
        "KCHAT_S3_BUCKET": "kchat-archive", "KCHAT_ARCHIVE_PREFIX": "archive/",
        "KCHAT_ROLL_BYTES": "33554432", "KCHAT_ROLL_AGE_S": "300"}
    assert env["KCHAT_S3_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "att", "key": "secret-key"}
    assert "KCHAT_SCHEMA_REGISTRY_URL" not in env
    spool = next(m for m in c["volumeMounts"] if m["mountPath"] == env["KCHAT_SPOOL_DIR"]["value"])
    assert next(v for v in spec["volumes"] if v["name"] == spool["name"])["emptyDir"] == {"sizeLimit": "2Gi"}
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "ops"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    # production: a bucket and a key pair of its own, and the NetworkPolicy
    docs = render(tools, chart, *production_args())
    env = env_of(container(docs, "archiver"))
    assert (env["KCHAT_S3_ENDPOINT"]["value"], env["KCHAT_S3_REGION"]["value"],
            env["KCHAT_S3_BUCKET"]["value"]) == ("https://s3.eu-west-1.amazonaws.com", "eu-west-1",
                                                 "chat-example-archive")
    for name in ("KCHAT_S3_ACCESS_KEY", "KCHAT_S3_SECRET_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "kchat-archive-s3"
    assert env["KCHAT_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kchat-kafka"
    egress = find(docs, "NetworkPolicy", f"{FULL}-archiver")[0]["spec"]["egress"]
    assert sorted(p["port"] for r in egress for p in r["ports"]) == [53, 53, 443, 9093]
    # a store of its own
    env = env_of(container(render(tools, chart, "--set", "archiver.endpoint=https://archive.example:9443,"
                                  "archiver.region=eu-central-1,archiver.prefix=kchat/"), "archiver"))
    assert (env["KCHAT_S3_ENDPOINT"]["value"], env["KCHAT_S3_REGION"]["value"],
            env["KCHAT_ARCHIVE_PREFIX"]["value"]) == ("https://archive.example:9443", "eu-central-1", "kchat/")
    assert "/archiver/endpoint" in refused(tools, chart, "--set", "archiver.endpoint=archive.example")
    assert "/archiver/topics" in refused(tools, chart, "--set-json", "archiver.topics=[]")


def test_init_hook_runs_topics_and_migrate_first(tools, chart):
    docs = render(tools, chart)
    job = find(docs, "Job", f"{FULL}-init")[0]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    cmd = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[-1] == "kchatctl topics && kchatctl migrate"


def test_readers_can_be_upgraded_before_writers(tools, chart):
    """A component's imageTag overrides image.tag for it alone: the upgrade order of the
    chart's README (projector, notifier and api, then processor, then gateways) is three
    upgrades."""
    docs = render(tools, chart, "--set",
                  "image.tag=1.0,projector.imageTag=1.1,notifier.imageTag=1.1,api.imageTag=1.1")
    tags = {d: container(docs, d)["image"].rsplit(":", 1)[1] for d in DAEMONS}
    assert tags == {"gateway": "1.0", "processor": "1.0", "projector": "1.1", "notifier": "1.1",
                    "api": "1.1"}


def test_pdb_hpa_networkpolicy_servicemonitor(tools, chart):
    default = render(tools, chart)
    assert {d["kind"] for d in default}.isdisjoint(
        {"HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "PrometheusRule", "Ingress"})
    docs = render(tools, chart, *production_args())
    for d in DAEMONS + OTHERS:
        pdb = find(docs, "PodDisruptionBudget", f"{FULL}-{d}")[0]
        assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == d
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in find(docs, "HorizontalPodAutoscaler")}
    assert set(hpas) == {f"{FULL}-gateway", f"{FULL}-api"}
    gw = hpas[f"{FULL}-gateway"]
    assert gw["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert {m["type"] for m in gw["spec"]["metrics"]} == {"Resource", "Pods"}
    assert gw["spec"]["metrics"][1]["pods"]["metric"]["name"] == "kchat_gateway_connections"
    # Autoscaled workloads leave replicas to the HPA.
    assert "replicas" not in find(docs, "StatefulSet", f"{FULL}-gateway")[0]["spec"]
    # A gateway beyond the partitions of chat.deliveries would own no slot.
    assert "exceed the partitions" in refused(tools, chart, "--set",
                                              "gateway.autoscaling.enabled=true,gateway.autoscaling.maxReplicas=9")
    # NetworkPolicy: one per daemon; the ingress controller reaches only web and ws ports,
    # Prometheus only the metrics ports.
    nps = {n["metadata"]["name"]: n for n in find(docs, "NetworkPolicy")}
    assert set(nps) == {f"{FULL}-{d}" for d in DAEMONS + OTHERS}
    ports = {d: {p["port"] for r in nps[f"{FULL}-{d}"]["spec"]["ingress"] for p in r["ports"]}
             for d in DAEMONS + OTHERS}
    assert ports == {"gateway": {8081, 9091}, "processor": {9095}, "projector": {9096},
                     "notifier": {9097}, "api": {8088, 8080}, "registry": {8085},
                     "archiver": {9099}}
    # The registry: any pod of the namespace (readers of the topics) and Prometheus, never
    # the ingress controller; it reaches nothing but DNS.
    reg = nps[f"{FULL}-registry"]["spec"]
    assert [r["from"] for r in reg["ingress"]][0] == [{"podSelector": {}}]
    assert not any(f.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                   == "ingress-nginx" for r in reg["ingress"] for f in r["from"])
    assert sorted(p["port"] for r in reg["egress"] for p in r["ports"]) == [53, 53]
    # Every other daemon may reach the registry's pods, for its check at start.
    for d in DAEMONS:
        rule = next(r for r in nps[f"{FULL}-{d}"]["spec"]["egress"]
                    if [p["port"] for p in r["ports"]] == [8085])
        assert rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == \
            "registry", d
    api_rules = nps[f"{FULL}-api"]["spec"]["ingress"]
    ic = next(r for r in api_rules if r["from"][0]["podSelector"]["matchLabels"].get("app.kubernetes.io/name") == "ingress-nginx")
    assert [p["port"] for p in ic["ports"]] == [8088]
    egress = nps[f"{FULL}-processor"]["spec"]["egress"]
    assert sorted(p["port"] for r in egress for p in r["ports"]) == [53, 53, 6379, 8085, 9093]
    # The notifier: Kafka, Postgres, Redis, and HTTPS to any address (push services are
    # anywhere on the internet; the production webhook is on 443 too).
    egress = nps[f"{FULL}-notifier"]["spec"]["egress"]
    assert sorted(p["port"] for r in egress for p in r["ports"]) == [53, 53, 443, 5432, 6379, 8085,
                                                                     9093]
    https = next(r for r in egress if [p["port"] for p in r["ports"]] == [443])
    assert "to" not in https, https
    # ServiceMonitor: each daemon's Service once (not the gateway's headless one).
    sm = find(docs, "ServiceMonitor")[0]
    labelled = [s["metadata"]["name"] for s in find(docs, "Service")
                if all(s["metadata"]["labels"].get(k) == v
                       for k, v in sm["spec"]["selector"]["matchLabels"].items())]
    assert sorted(labelled) == sorted(f"{FULL}-{d}" for d in DAEMONS + OTHERS)
    rule = find(docs, "PrometheusRule")[0]
    assert rule["spec"]["groups"] and rule["spec"]["groups"][0]["rules"]
    dash = find(docs, "ConfigMap")
    dash = [c for c in dash if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert dash and all(k.endswith(".json") for c in dash for k in c["data"])


def test_prometheus_rule_needs_the_rule_file(tools, tmp_path):
    """Without files/monitoring the chart still renders, and refuses a PrometheusRule with a
    message that says what is missing."""
    copy = tmp_path / "kchat"
    shutil.copytree(CHART, copy, symlinks=False, ignore=shutil.ignore_patterns("monitoring"))
    assert "alerts.yml" in refused(tools, copy, "--set", "metrics.prometheusRule.enabled=true")
    assert "dashboards" in refused(tools, copy, "--set", "metrics.dashboards.enabled=true")


@pytest.mark.parametrize("values", ["default", "production"])
def test_notes(tools, chart, values):
    """NOTES.txt renders (helm install --dry-run=client needs no cluster) and says where
    things are."""
    args = production_args() if values == "production" else []
    out = helm(tools, "install", "--dry-run=client", RELEASE, str(chart), *args).stdout
    notes = out.split("NOTES:", 1)[1]
    assert "<nil>" not in notes and "%!" not in notes
    assert "instance id = pod name" in notes and "/metrics" in notes
    if values == "production":
        assert "https://chat.example.com/" in notes
        assert "accept browsers from: https://chat.example.com" in notes


def test_the_daemons_check_their_schemas_against_the_registry(tools, chart):
    """Every daemon but the registry is given the registry's URL: this release's kchat-registry
    by default, with no init step; with schemaRegistryUrl, that one, registered by the init
    Job first, and reachable through the NetworkPolicy on its port."""
    docs = render(tools, chart)
    for d in DAEMONS:
        assert env_of(container(docs, d))["KCHAT_SCHEMA_REGISTRY_URL"]["value"] == (
            f"http://{FULL}-registry:8085"), d
    assert "KCHAT_SCHEMA_REGISTRY_URL" not in env_of(container(docs, "registry"))
    svc = find(docs, "Service", f"{FULL}-registry")[0]
    assert svc["spec"]["type"] == "ClusterIP" and [p["port"] for p in svc["spec"]["ports"]] == [8085]
    job = find(docs, "Job", f"{FULL}-init")[0]["spec"]["template"]["spec"]["containers"][0]
    assert "register-schemas" not in job["command"][-1]
    own = "https://sr.example.com:8443"
    docs = render(tools, chart, "--set", f"schemaRegistryUrl={own},networkPolicy.enabled=true")
    for d in DAEMONS:
        assert env_of(container(docs, d))["KCHAT_SCHEMA_REGISTRY_URL"]["value"] == own, d
        egress = find(docs, "NetworkPolicy", f"{FULL}-{d}")[0]["spec"]["egress"]
        rule = next(r for r in egress if [p["port"] for p in r["ports"]] == [8443])
        assert "to" not in rule, rule
    job = find(docs, "Job", f"{FULL}-init")[0]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"][-1].endswith("kchatctl register-schemas")
    assert {"name": "KCHAT_SCHEMA_REGISTRY_URL", "value": own} in job["env"]
    assert "schemaRegistryUrl" in refused(tools, chart, "--set", "schemaRegistryUrl=ftp://x")
