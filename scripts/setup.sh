#!/usr/bin/env bash
# Set up everything netanomd needs on a Debian (bookworm) machine, idempotently:
#   1. Debian packages (as root, or through sudo): Suricata 7 from bookworm-backports, Redis,
#      Debian's Broker Python bindings, the headers systemd-python builds against, Chromium and
#      its driver (browser tests of the analyst page).
#   2. A virtualenv in .venv with netanomd installed in editable mode, plus test tools.
#   3. Broker's `broker` package (and only it) made importable inside the venv: Zeek's own
#      bindings when they fit the venv's Python, else Debian's.
# Usage: scripts/setup.sh [--no-apt]      (NETANOMD_NO_APT=1 has the same effect)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# gcc + python3-dev + libsystemd-dev + pkg-config: systemd-python builds from source.
# chromium + chromium-driver: the analyst page's browser tests (Playwright drives this Chromium).
APT_PACKAGES=(python3-venv python3-dev gcc python3-broker redis-server libsystemd-dev pkg-config systemd
    chromium chromium-driver)
APT_PACKAGES+=(prometheus prometheus-node-exporter)  # netanomd metrics and its tests (tests/test_telemetry_prometheus.py)
APT_PACKAGES+=(tcpreplay iproute2)  # tests/test_live_capture.py: replaying captures onto a veth pair in netns
APT_PACKAGES+=(podman debootstrap runc docker-compose)  # the container image and compose.yaml: scripts/build-image.sh, tests/test_container_image.py
BACKPORTS_PACKAGES=(suricata)

want_apt=1
[[ "${1:-}" == "--no-apt" || "${NETANOMD_NO_APT:-0}" == "1" ]] && want_apt=0

if [[ $want_apt == 1 ]]; then
    if [[ $(id -u) == 0 ]]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else
        log "not root and no sudo: skipping Debian packages (install ${APT_PACKAGES[*]} by hand)"
        want_apt=0
    fi
fi

if [[ $want_apt == 1 ]]; then
    missing=()
    for p in "${APT_PACKAGES[@]}" "${BACKPORTS_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing Debian packages: ${missing[*]}"
        src=/etc/apt/sources.list.d/bookworm-backports.sources
        if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
            "${SUDO[@]}" tee "$src" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        fi
        export DEBIAN_FRONTEND=noninteractive
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_PACKAGES[@]}" >&2
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            -t bookworm-backports "${BACKPORTS_PACKAGES[@]}" >&2
        # The Debian suricata package enables its own service; we only use the binary.
        "${SUDO[@]}" systemctl disable --now suricata.service >/dev/null 2>&1 || true
    fi
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    log "netanomd needs Python >= 3.11; $PY is $("$PY" --version 2>&1)"
    exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
    log "creating virtualenv .venv"
    "$PY" -m venv .venv
fi
stamp=.venv/.netanomd-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    log "installing Python packages into .venv"
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e '.[test,full,ui]' >&2
    touch "$stamp"
fi

# Broker's bindings: expose only the `broker` package, not all of dist-packages. Zeek's own
# bindings (zeek-config --python_dir) come first: Debian's python3-broker is Broker 1.4, which
# cannot peer with Zeek >= 4 (netanomd refuses it when a newer local Zeek is found; the
# daemon's loader also tries zeek-config before this link, and NETANOMD_BROKER_PYTHON_DIR
# overrides both).
pyver=$(.venv/bin/python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
zeek_python=""
for zc in "$(command -v zeek-config || true)" /opt/zeek/bin/zeek-config /usr/local/zeek/bin/zeek-config; do
    if [[ -n $zc && -x $zc ]]; then
        zeek_python=$("$zc" --python_dir 2>/dev/null || true)
        break
    fi
done
rm -f "$site/netanomd-broker.pth"
rm -rf .venv/broker-bindings
for candidate in "$zeek_python" /usr/lib/python3/dist-packages; do
    if [[ -n $candidate && -f $candidate/broker/__init__.py ]]; then
        so=$(ls "$candidate"/broker/_broker.cpython-"${pyver/./}"-*.so "$candidate"/broker/_broker.so 2>/dev/null | head -1 || true)
        if [[ -n $so ]]; then
            mkdir -p .venv/broker-bindings
            ln -sfn "$candidate/broker" .venv/broker-bindings/broker
            echo "$PWD/.venv/broker-bindings" > "$site/netanomd-broker.pth"
            [[ $candidate == "$zeek_python" ]] || [[ -z $zeek_python ]] ||
                log "warning: Zeek's Broker bindings in $zeek_python are not built for Python $pyver; linked Debian's instead, which cannot peer with a current Zeek (use --transport ws)"
            break
        fi
    fi
done
log "ready: $(.venv/bin/netanomd --version)"
