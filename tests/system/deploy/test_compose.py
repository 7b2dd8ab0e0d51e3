"""The Compose stack (compose/) checked without a Docker engine: nothing is built, pulled or
run. Both loaders accept compose/docker-compose.yml (Debian 12's docker-compose 1.29, and
compose-go, the loader of Docker Compose v2, through scripts/compose-check.sh); then the
loaded file is held to what compose/README.md says: every image pinned, a health check on
every long-running service with a command its image has, no daemon port published, the
ingress rendered from web/nginx.conf.in routing / /ws and REST and refusing /metrics (run for
real on local nginx, with stand-ins for the API and a gateway), Prometheus scraping every
daemon, the monitoring/ files mounted from ../monitoring. Needs no running stack:

  .venv/bin/python -m pytest tests/system/deploy/test_compose.py -q -p no:cacheprovider
"""
import grp
import ipaddress
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from kchat_testkit.http import free_port, http_get, wait_until
from kchat_testkit.stack import ROOT, SPEC

if os.environ.get("SANITIZE") == "1":
    pytest.skip("the Compose checks do not depend on the build", allow_module_level=True)

pytestmark = pytest.mark.nostack

COMPOSE = ROOT / "compose"
FILE = COMPOSE / "docker-compose.yml"
MONITORING = ROOT / "monitoring"

# What each image is known to hold, for its health check: the first word of the check must
# be one of these. Sources: apache/kafka is Alpine with Kafka in /opt/kafka (its
# docker/jvm/Dockerfile); postgres and redis ship their clients; MinIO's image (ubi-micro)
# holds minio and mc, and `mc ready` is MinIO's own check in its Compose example (curl was
# missing from it for months after the switch to ubi-micro, so it is not relied on);
# Prometheus's image is busybox (wget); Grafana's installs curl on Alpine and on Ubuntu;
# nginx:*-alpine has busybox's wget. kchat:dev is checked against compose/Dockerfile itself.
IMAGE_TOOLS = {
    "apache/kafka": {"/opt/kafka/bin/kafka-broker-api-versions.sh"},
    "postgres": {"pg_isready"},
    "redis": {"redis-cli"},
    "quay.io/minio/minio": {"mc"},
    "prom/prometheus": {"wget"},
    "grafana/grafana": {"curl", "wget"},
}
# The images built here, and the Dockerfile each comes from.
BUILT = {"kchat": "Dockerfile", "kchat-ingress": "Dockerfile.web"}

# What is published on the host, all on 127.0.0.1 (compose/README.md, "Ports").
PUBLISHED = {"ingress": 8080, "minio": 9000, "prometheus": 9090, "grafana": 3000}


def clean_env():
    """The environment without KCHAT_* or COMPOSE_* variables: the file as compose/.env
    sets it, not as the test stack's environment would."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KCHAT_", "COMPOSE_", "DOCKER_"))}
    return env


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=clean_env(),
                          cwd=ROOT, **kw)


@pytest.fixture(scope="module")
def docker_compose():
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose not found (scripts/deps.sh --test installs Debian's package)"
    return exe


@pytest.fixture(scope="module")
def model(docker_compose):
    """The file as docker-compose 1.29 loads it: .env read, variables interpolated, merge
    keys resolved, relative paths made absolute."""
    r = run([docker_compose, "-f", str(FILE), "config"])
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(FILE.read_text())


@pytest.fixture(scope="module")
def dotenv():
    out = {}
    for line in (COMPOSE / ".env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def daemon_services(model):
    """{service: daemon name} of every service that runs a kchat daemon."""
    out = {}
    for name, svc in model["services"].items():
        cmd = svc.get("command") or []
        if cmd and cmd[0].startswith("kchat-") and cmd[0] != "kchatctl":
            out[name] = cmd[0].removeprefix("kchat-")
    return out


def long_running(model):
    return {n: s for n, s in model["services"].items() if s.get("restart") != "no"}


def split_image(ref):
    """(repository, tag) of an image reference; tag None when there is none."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, None


# ---- the two loaders ----

def test_docker_compose_1_29_validates(docker_compose):
    version = run([docker_compose, "version", "--short"]).stdout.strip()
    r = run([docker_compose, "-f", str(FILE), "config", "-q"])
    assert r.returncode == 0, f"docker-compose {version}: {r.stderr}"
    assert "WARN" not in r.stderr, r.stderr


def test_compose_go_validates(model):
    """compose-go (Docker Compose v2's loader) loads it without an error or a warning, and
    sees the same project as docker-compose 1.29."""
    r = run([str(ROOT / "scripts" / "compose-check.sh"), "-json", str(FILE)])
    assert r.returncode == 0, r.stderr
    project = json.loads(r.stdout)
    assert project["name"] == "kchat"
    assert sorted(project["services"]) == sorted(model["services"])
    for name, svc in project["services"].items():
        assert svc["image"] == model["services"][name]["image"], name
        want = model["services"][name].get("environment") or {}
        assert svc.get("environment", {}) == want, name


def test_a_format_both_loaders_accept(raw):
    # 1.29 refuses a top-level name; Compose v2 warns about version (compose-check fails on it)
    assert "name" not in raw and "version" not in raw


def test_every_variable_has_its_value_in_dotenv(dotenv):
    """Every ${VAR} of the file is set in compose/.env, so the stack needs no exported
    variable; and .env sets nothing the file does not use."""
    text = FILE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    # each one required, so that a missing setting stops both loaders with its name
    for ref in re.findall(r"(?<!\$)\$\{[^}]*\}", text):
        assert re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*:\?set in compose/\.env\}", ref), ref
    assert used <= set(dotenv), f"not in compose/.env: {sorted(used - set(dotenv))}"
    assert set(dotenv) - {"COMPOSE_PROJECT_NAME"} <= used, \
        f"compose/.env sets what the file does not use: {sorted(set(dotenv) - used)}"
    assert dotenv["COMPOSE_PROJECT_NAME"] == "kchat"


# ---- images ----

def test_every_image_is_pinned(model):
    for name, svc in model["services"].items():
        repo, tag = split_image(svc["image"])
        assert tag and tag != "latest", f"{name}: {svc['image']} is not pinned to a tag"
        if "build" in svc:
            assert repo in BUILT, f"{name}: built image {repo} is not one of {sorted(BUILT)}"
            dockerfile = Path(svc["build"]["context"]) / svc["build"]["dockerfile"]
            assert dockerfile == COMPOSE / BUILT[repo], f"{name}: built from {dockerfile}"
        else:
            # a version, not a moving major: at least major.minor (or MinIO's RELEASE.date)
            assert re.search(r"\d+\.\d+|^RELEASE\.\d{4}-", tag), \
                f"{name}: {svc['image']} names a moving tag, not a version"


def test_the_dockerfiles_pin_their_base_images():
    for dockerfile in (COMPOSE / f for f in set(BUILT.values())):
        stages = set()
        for line in dockerfile.read_text().splitlines():
            m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
            if not m:
                continue
            if m.group(1) not in stages:
                repo, tag = split_image(m.group(1))
                assert tag and tag != "latest", f"{dockerfile.name}: FROM {m.group(1)}"
            if m.group(2):
                stages.add(m.group(2))


def test_the_image_holds_every_daemon():
    """compose/Dockerfile installs the binary of every daemon of scripts/daemons.json, and
    kchatctl, where the services' commands find them; with OpenSSL's libcrypto (Web Push),
    its -dev package in the build stage and its library in the runtime one."""
    text = (COMPOSE / "Dockerfile").read_text().replace("\\\n", " ")
    installed = re.search(r"install -m 0755 ([^&]*)/out/bin/", text).group(1).split()
    for d in SPEC:
        assert f"/build/{d['binary']}" in installed, f"{d['binary']} is not in the image"
    assert "/build/ctl/kchatctl" in installed
    build = text[:text.index("AS runtime")]
    if "find_package(OpenSSL" in (ROOT / "CMakeLists.txt").read_text():
        assert "libssl-dev" in build.split() and "libssl3" in runtime_packages()


def runtime_packages():
    """The packages compose/Dockerfile installs in its runtime stage."""
    text = (COMPOSE / "Dockerfile").read_text()
    runtime = text[text.index("AS runtime"):]
    install = re.search(r"apt-get install[^&]*", runtime.replace("\\\n", " ")).group(0)
    return set(install.split())


# ---- health checks ----

def test_every_long_running_service_has_a_health_check_its_image_can_run(model):
    for name, svc in long_running(model).items():
        hc = svc.get("healthcheck")
        assert hc and not hc.get("disable"), f"{name} has no health check"
        test = hc["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"
        program = test[1] if test[0] == "CMD" else shlex.split(test[1])[0]
        repo, _ = split_image(svc["image"])
        if repo == "kchat":
            assert program in runtime_packages(), \
                f"{name}: {program} is not installed by compose/Dockerfile's runtime stage"
        elif repo == "kchat-ingress":
            # nginx:*-alpine: busybox's wget
            assert program == "wget", f"{name}: {program}"
            web = (COMPOSE / "Dockerfile.web").read_text()
            assert re.search(r"^FROM nginx:[\d.]+-alpine", web, re.M)
        else:
            assert repo in IMAGE_TOOLS, \
                f"{name}: nothing known of what {repo} holds; add it to IMAGE_TOOLS"
            assert program in IMAGE_TOOLS[repo], f"{name}: {program} is not known to be in {repo}"
        assert not (repo.endswith("minio") and "curl" in " ".join(test)), \
            f"{name}: curl in MinIO's check"


def test_each_daemon_is_checked_on_its_own_health_port(model):
    """A daemon's health check asks the port its environment gives its /health listener."""
    spec = {d["name"]: d for d in SPEC}
    for name, daemon in daemon_services(model).items():
        env = model["services"][name]["environment"]
        var = "KCHAT_ADMIN_PORT" if spec[daemon]["health"] == "admin" else "KCHAT_LISTEN_PORT"
        url = model["services"][name]["healthcheck"]["test"][-1]
        assert url == f"http://127.0.0.1:{env[var]}/health", f"{name}: {url}"


# ---- daemons and ports ----

def test_every_daemon_runs_with_the_ports_of_daemons_json(model):
    """Each daemon of scripts/daemons.json runs (three gateways, slots 0..2), its listeners
    on the ports the Helm chart uses too (daemons.json's chart_port)."""
    services = daemon_services(model)
    for d in SPEC:
        mine = sorted(n for n, daemon in services.items() if daemon == d["name"])
        assert mine, f"no service runs kchat-{d['name']}"
        for n in mine:
            env = model["services"][n]["environment"]
            for p in d["ports"]:
                var = "KCHAT_ADMIN_PORT" if p["role"] == "admin" else "KCHAT_LISTEN_PORT"
                assert env.get(var) == str(p["chart_port"]), f"{n}: {var}={env.get(var)}"
    gateways = sorted(n for n, daemon in services.items() if daemon == "gateway")
    assert gateways == ["gateway", "gateway1", "gateway2"]
    slots = sorted(model["services"][g]["environment"]["KCHAT_SLOT"] for g in gateways)
    assert slots == ["0", "1", "2"]


def test_only_the_documented_ports_are_published(model):
    """No daemon's port (and so no /metrics, no operations listener) reaches the host: only
    the ingress, MinIO (presigned URLs), Prometheus and Grafana, on 127.0.0.1, as
    compose/README.md lists them."""
    readme = (COMPOSE / "README.md").read_text()
    published = {}
    for name, svc in model["services"].items():
        for p in svc.get("ports") or []:
            m = re.match(r"^([\d.]+):(\d+):(\d+)(?:/tcp)?$", str(p))
            host_ip, host_port, target = m.groups()
            assert host_ip == "127.0.0.1", f"{name} publishes {p} beyond 127.0.0.1"
            published.setdefault(name, []).append((int(host_port), int(target)))
    assert {n: [hp for hp, _ in v] for n, v in published.items()} == \
        {n: [port] for n, port in PUBLISHED.items()}
    for name, port in PUBLISHED.items():
        assert re.search(rf"^\|\s*`{name}`.*127\.0\.0\.1:{port}", readme, re.M), \
            f"compose/README.md does not list {name} on 127.0.0.1:{port}"
    assert not set(published) & set(daemon_services(model))


def test_redis_has_a_password_every_redis_client_knows(model):
    services = model["services"]
    cmd = services["redis"]["command"]
    password = cmd[cmd.index("--requirepass") + 1]
    assert password
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == password
    users = [n for n, s in services.items() if "KCHAT_REDIS_HOST" in (s.get("environment") or {})]
    assert {"gateway", "gateway1", "gateway2", "projector", "api", "processor"} <= set(users)
    for n in users:
        assert services[n]["environment"].get("KCHAT_REDIS_PASSWORD") == password, n
        assert services[n]["depends_on"]["redis"]["condition"] == "service_healthy", n


def test_kafka_stays_inside_the_compose_network(model):
    assert not model["services"]["kafka"].get("ports")
    for name in daemon_services(model):
        env = model["services"][name]["environment"]
        assert env["KCHAT_KAFKA_BROKERS"] == "kafka:9092", name
        assert env["KCHAT_KAFKA_SECURITY_PROTOCOL"] == "plaintext", name


def test_the_api_trusts_the_ingress_address(model):
    ingress = model["services"]["ingress"]
    address = ingress["networks"]["default"]["ipv4_address"]
    assert model["services"]["api"]["environment"]["KCHAT_TRUSTED_PROXIES"] == address
    subnet = ipaddress.ip_network(model["networks"]["default"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(address) in subnet and subnet.is_private


# ---- the ingress ----

def ingress_env(model):
    return {k: str(v) for k, v in model["services"]["ingress"]["environment"].items()}


def test_the_ingress_image_renders_web_nginx_conf_in():
    """compose/Dockerfile.web turns web/nginx.conf.in (not a copy) into the nginx image's
    envsubst template, and gives every variable the template uses a default."""
    text = (COMPOSE / "Dockerfile.web").read_text()
    assert "COPY web/nginx.conf.in " in text
    assert "kchat-ingress-template" in text and "/etc/nginx/templates/nginx.conf.template" in text
    assert "NGINX_ENVSUBST_OUTPUT_DIR=/etc/nginx " in text
    m = re.search(r"COPY compose/ingress/(\S+\.envsh) /docker-entrypoint\.d/", text)
    # sourced before 20-envsubst-on-templates.sh renders the template
    assert m and m.group(1) < "20-envsubst-on-templates.sh"
    assert "npm ci" in text and "npm run build" in text and "COPY --from=web" in text
    assert not list((ROOT / "compose").rglob("nginx*.conf")), "a second copy of the nginx config"


def render_ingress(tmp_path, env, dist):
    """The ingress's nginx.conf as its container renders it: compose/ingress/template.sh,
    then the settings' script, then envsubst over the KCHAT_INGRESS_* variables."""
    d = tmp_path / "ingress"
    (d / "tmp").mkdir(parents=True)
    shutil.copy(ROOT / "web" / "nginx-proxy-api.conf", d / "proxy-api.conf")
    user_line = ""
    if os.getuid() == 0:  # as root, nginx would hand its workers to nobody
        user_line = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(0).gr_name};"
    r = subprocess.run(["sh", str(COMPOSE / "ingress" / "template.sh"),
                        str(ROOT / "web" / "nginx.conf.in"), str(d / "nginx.conf.template"),
                        str(d), str(dist), user_line], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # set -eu: the image's 15-local-resolvers.envsh, sourced before, leaves them on
    script = ('set -eu; . "$1"; envsubst "$(printf \'${%s} \' $(awk \'END { for (n in ENVIRON) '
              'if (n ~ /^KCHAT_INGRESS_/) print n }\' </dev/null))" <"$2" >"$3"')
    r = subprocess.run(["sh", "-c", script, "sh",
                        str(COMPOSE / "ingress" / "18-kchat-ingress.envsh"),
                        str(d / "nginx.conf.template"), str(d / "nginx.conf")],
                       env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True)
    return r, d


def test_the_ingress_settings_are_checked(tmp_path, model):
    env = ingress_env(model)
    for key, bad in [("KCHAT_INGRESS_GATEWAYS", ""), ("KCHAT_INGRESS_GATEWAYS", "gateway"),
                     ("KCHAT_INGRESS_API", "api"), ("KCHAT_INGRESS_WS_TIMEOUT_S", "5"),
                     ("KCHAT_INGRESS_S3_ORIGIN", "http://minio:9000/bucket"),
                     ("KCHAT_INGRESS_S3_ORIGIN", "http://x;script-src *")]:
        r, _ = render_ingress(tmp_path / f"{key}-{bad}", {**env, key: bad}, tmp_path)
        assert r.returncode != 0 and key in r.stderr, (key, bad, r.stderr)


def test_the_rendered_ingress_routes_like_the_local_one(tmp_path, model):
    env = ingress_env(model)
    r, d = render_ingress(tmp_path, env, tmp_path / "dist")
    assert r.returncode == 0, r.stderr
    conf = (d / "nginx.conf").read_text()
    assert "${" not in conf and not re.search(r"@[A-Z_]+@", conf), "a variable or placeholder left"
    upstream = re.search(r"upstream kchat_gateways \{(.*?)\}", conf, re.S).group(1)
    assert re.findall(r"server (\S+) ", upstream) == env["KCHAT_INGRESS_GATEWAYS"].split(",")
    assert re.search(r"upstream kchat_api \{\s*server api:8080 ", conf)
    assert "location = /ws {\n            proxy_pass http://kchat_gateways;" in conf
    for path in ["/auth/", "= /conversations", "/conversations/", "= /search", "/attachments/",
                 "= /users", "/users/", "/push/", "= /health"]:
        line = re.search(rf"^\s*location {re.escape(path)} .*$", conf, re.M)
        assert line and "proxy-api.conf" in line.group(0), path
    assert re.search(r"location = /metrics \{\s*default_type application/json;\s*return 404", conf)
    assert re.search(r"listen 8080;", conf)
    # the page may reach the object store the API's presigned URLs name, and nothing else
    store = re.match(r"^(https?://[^/]+)", model["services"]["api"]["environment"]["KCHAT_S3_ENDPOINT"]).group(1)
    assert env["KCHAT_INGRESS_S3_ORIGIN"] == store
    csp = re.search(r'add_header Content-Security-Policy "([^"]*)"', conf).group(1)
    assert f"connect-src 'self' {store};" in csp and f"img-src 'self' data: {store};" in csp, csp
    assert "default-src 'self';" in csp and "object-src 'none'" in csp and "frame-ancestors 'none'" in csp


def test_the_ingress_without_an_object_store_keeps_the_page_to_itself(tmp_path, model):
    env = {**ingress_env(model), "KCHAT_INGRESS_S3_ORIGIN": ""}
    r, d = render_ingress(tmp_path, env, tmp_path / "dist")
    assert r.returncode == 0, r.stderr
    conf = (d / "nginx.conf").read_text()
    assert "connect-src 'self'; img-src 'self' data:; style-src 'self';" in conf


def gone(pid):
    """The process has exited (or is a zombie nobody has reaped yet)."""
    try:
        return "\tZ" in Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n")[0]
    except (FileNotFoundError, ProcessLookupError):
        return True


class _Api(BaseHTTPRequestHandler):
    seen = []

    def _answer(self):
        _Api.seen.append(self.path)
        body = b'{"from":"api"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *a):
        pass


def test_the_rendered_ingress_serves_the_client_rest_and_ws_and_not_metrics(tmp_path, model):
    """The configuration the container would run, on this machine's nginx, with the
    service names pointed at stand-ins: a JSON server for the API, a WebSocket echo server
    for the gateways."""
    from websockets.sync.client import connect
    from websockets.sync.server import serve

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.access(nginx, os.X_OK), "nginx not found (scripts/deps.sh installs it)"
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>kchat-compose-ingress</title>")

    api = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    gw = serve(lambda conn: conn.send("path=" + conn.request.path), "127.0.0.1", 0)
    threading.Thread(target=gw.serve_forever, daemon=True).start()
    port = free_port()
    env = ingress_env(model)
    names = {"api": api.server_address[1]}
    gateways = env["KCHAT_INGRESS_GATEWAYS"].split(",")
    names.update({hp.split(":")[0]: gw.socket.getsockname()[1] for hp in gateways})

    def swap(hostport):
        return f"127.0.0.1:{names[hostport.split(':')[0]]}"

    env.update(KCHAT_INGRESS_LISTEN=f"127.0.0.1:{port}",
               KCHAT_INGRESS_API=swap(env["KCHAT_INGRESS_API"]),
               KCHAT_INGRESS_GATEWAYS=",".join(swap(g) for g in gateways))
    r, d = render_ingress(tmp_path, env, dist)
    assert r.returncode == 0, r.stderr
    conf = d / "nginx.conf"
    t = subprocess.run([nginx, "-t", "-q", "-p", str(d), "-c", str(conf),
                        "-e", str(d / "error.log")], capture_output=True, text=True)
    assert t.returncode == 0, t.stderr
    subprocess.run([nginx, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")], check=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_get(url + "/")[0] == 200, "the ingress", timeout=10)
        status, _, body = http_get(url + "/some/deep/link")
        assert status == 200 and b"kchat-compose-ingress" in body
        _Api.seen.clear()
        for method, path in [("GET", "/health"), ("POST", "/auth/login"), ("GET", "/conversations"),
                             ("GET", "/conversations/c1/messages?limit=1"), ("GET", "/users/u1"),
                             ("GET", "/search?q=x"), ("POST", "/attachments/presign")]:
            data = b"{}" if method == "POST" else None
            status, _, body = http_get(url + path, method=method, data=data)
            assert status == 200 and json.loads(body) == {"from": "api"}, path
        assert len(_Api.seen) == 7
        status, _, body = http_get(url + "/metrics")
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
        assert "/metrics" not in _Api.seen
        with connect(f"ws://127.0.0.1:{port}/ws?access_token=t") as ws:
            assert ws.recv(timeout=10) == "path=/ws?access_token=t"
    finally:
        pid = int((d / "nginx.pid").read_text())
        os.kill(pid, 15)
        wait_until(lambda: gone(pid), "nginx to stop", timeout=10)
        api.shutdown()
        gw.shutdown()


# ---- Prometheus and Grafana ----

def test_prometheus_scrapes_every_daemon(model):
    """One job per daemon, named as monitoring/prometheus/alerts.yml expects
    (kchat-<daemon>), whose targets are every service of that daemon on the port serving
    its /metrics (the API's REST port, the others' operations port)."""
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    jobs = {j["job_name"]: sorted(t for sc in j["static_configs"] for t in sc["targets"])
            for j in prom["scrape_configs"]}
    services = daemon_services(model)
    for d in SPEC:
        var = "KCHAT_ADMIN_PORT" if d["health"] == "admin" else "KCHAT_LISTEN_PORT"
        want = sorted(f"{n}:{model['services'][n]['environment'][var]}"
                      for n, daemon in services.items() if daemon == d["name"])
        job = f"kchat-{d['name']}"
        assert jobs.get(job) == want, f"{job}: {jobs.get(job)}"
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found (scripts/deps.sh --test installs Debian's prometheus)"
    r = subprocess.run([promtool, "check", "config", "--syntax-only",
                        str(COMPOSE / "prometheus.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def binds(svc):
    """{target: (absolute source, read only)} of a service's bind mounts."""
    out = {}
    for v in svc.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            source, target, ro = parts[0], parts[1], "ro" in parts[2:]
        else:
            if v.get("type") != "bind":
                continue
            source, target, ro = v["source"], v["target"], bool(v.get("read_only"))
        if source.startswith("/"):
            out[target] = (Path(source), ro)
    return out


def test_monitoring_is_mounted_from_the_repository(model):
    """The rules and the dashboards come from ../monitoring (their files are not needed here,
    only the paths), read-only; no bind mount reaches outside the repository."""
    for name, svc in model["services"].items():
        for target, (source, ro) in binds(svc).items():
            assert source.is_relative_to(ROOT), f"{name}: {source} is outside the repository"
            assert ro, f"{name}: {source} is mounted writable"
    prom = binds(model["services"]["prometheus"])
    rules_dir = next(t for t, (s, _) in prom.items() if s == MONITORING / "prometheus")
    assert prom["/etc/prometheus/prometheus.yml"][0] == COMPOSE / "prometheus.yml"
    rule_files = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())["rule_files"]
    assert rule_files == [f"{rules_dir}/alerts.yml"]

    graf = binds(model["services"]["grafana"])
    dash_dir = next(t for t, (s, _) in graf.items() if s == MONITORING / "grafana" / "dashboards")
    assert graf["/etc/grafana/provisioning"][0] == COMPOSE / "grafana" / "provisioning"
    provisioning = COMPOSE / "grafana" / "provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "kchat.yml").read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == [dash_dir]
    assert not (COMPOSE / "monitoring").exists()


def test_grafana_has_the_stack_prometheus_as_default_data_source(model):
    """The dashboards pick their data source through a DS_PROMETHEUS variable of type
    prometheus: it lands on the default one, the stack's Prometheus."""
    path = COMPOSE / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    sources = yaml.safe_load(path.read_text())["datasources"]
    assert len(sources) == 1
    ds = sources[0]
    assert ds["type"] == "prometheus" and ds["isDefault"] is True
    listen = next(a for a in model["services"]["prometheus"]["command"]
                  if a.startswith("--web.listen-address="))
    assert ds["url"] == "http://prometheus:" + listen.rsplit(":", 1)[1]
