#!/usr/bin/env bash
# Installs what kchat needs and is missing: Debian packages (apt-get), the Kafka broker jars
# (Maven Central, see kafka/README.md) and, with --test, the test tools (promtool from
# Debian's prometheus package, docker-compose to check compose/, and a Python virtualenv with
# pytest and independent Kafka and Avro clients). Everything already present is left alone, so
# a second run is quick.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

with_tests=0
[[ ${1:-} == --test ]] && with_tests=1

packages=(build-essential cmake ninja-build pkg-config curl ca-certificates
    librdkafka-dev libpq-dev libwebsockets-dev libwebsockets-evlib-uv libcjson-dev libjwt-dev
    libhiredis-dev libavro-dev libmicrohttpd-dev libuv1-dev libsodium-dev libutf8proc-dev libcmocka-dev
    libcurl4-openssl-dev libgd-dev zlib1g-dev
    libssl-dev openssl postgresql redis-server nginx kcat jq)
command -v java >/dev/null || packages+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || packages+=(maven)
command -v go >/dev/null || packages+=(golang)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
if ((with_tests)); then
    packages+=(prometheus python3-venv wrk chromium docker-compose clang libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
    if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}"
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    # policy-rc.d keeps package scripts from starting system-wide services (we run our own).
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$KCHAT_ROOT/scripts/kafka.sh" fetch

if ((with_tests)); then
    venv=$KCHAT_ROOT/.venv
    req=$KCHAT_ROOT/tests/requirements.txt
    stamp=$venv/.requirements.sha256
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if [[ ! -x $venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
        echo "deps: preparing the test virtualenv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
        echo "$want" >"$stamp"
    fi
fi
