#!/usr/bin/env bash
# Build netanomd's container image (Containerfile) with podman, then check it for real: run the
# demo in it, run the daemon in it on a bundled capture until /healthz answers 200 with flows
# scored, run the image's own HEALTHCHECK, and stop it with SIGTERM (exit 0).
#
# Usage: scripts/build-image.sh [--tag IMAGE] [--base IMAGE] [--local-base] [--ca-bundle FILE]
#                               [--no-run]
#   --tag IMAGE       the image to build (default localhost/netanomd:latest)
#   --base IMAGE      the Debian bookworm base (default docker.io/library/debian:bookworm-slim);
#                     when it is neither present nor pullable (no registry reachable), the script
#                     makes a local one as --local-base does
#   --local-base      make the base here: debootstrap (root; the Debian mirror apt is configured
#                     with, or $DEBIAN_MIRROR) imported as localhost/netanomd-base:bookworm
#                     (made once; delete that image to make it again)
#   --ca-bundle FILE  CA bundle pip trusts in the build (a TLS-inspecting proxy); default $PIP_CERT
#                     when set. A build secret: not stored in the image.
#   --no-run          build only
# Prints (stdout) "built: ...", "size: <bytes>", the demo's output, "healthz: <status> <body>",
# "scored: <n> of <flows>", "healthcheck: healthy", "stopped: exit 0", "stored incidents: <n>",
# "total: <s> s"; progress on stderr; exits non-zero with the engine's error text on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

tag=localhost/netanomd:latest
base=docker.io/library/debian:bookworm-slim
local_base=0
run=1
ca=${PIP_CERT:-}
while (($#)); do
    case $1 in
        --tag) tag=${2:?--tag needs an image name}; shift 2 ;;
        --base) base=${2:?--base needs an image name}; shift 2 ;;
        --local-base) local_base=1; shift ;;
        --ca-bundle) ca=${2:?--ca-bundle needs a file}; shift 2 ;;
        --no-run) run=0; shift ;;
        *) die "unknown argument '$1' (see the header of $0)" ;;
    esac
done
command -v podman >/dev/null || die "podman is not installed (scripts/setup.sh installs it: podman, debootstrap, runc)"
[[ -z $ca || -r $ca ]] || die "--ca-bundle: cannot read '$ca'"

t0=$SECONDS
step() { log "$1 ($((SECONDS - t0)) s so far)"; }

local_base_image=localhost/netanomd-base:bookworm
make_local_base() {
    if podman image exists "$local_base_image"; then
        log "local base $local_base_image exists"
        return
    fi
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    [[ $(id -u) == 0 ]] || die "debootstrap needs root to make the local base"
    local mirror=${DEBIAN_MIRROR:-}
    if [[ -z $mirror ]]; then
        mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' \
            2>/dev/null | awk '$2 == "bookworm" {print $1; exit}')
    fi
    mirror=${mirror:-http://deb.debian.org/debian/}
    local root
    root=$(mktemp -d /var/tmp/netanomd-base.XXXXXX)
    step "debootstrap bookworm (minbase) from $mirror"
    if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1; then
        tail -20 "$root.log" >&2
        rm -rf "$root" "$root.log"
        die "debootstrap failed (log above)"
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*  # apt-get update remakes them
    tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$local_base_image" >/dev/null
    rm -rf "$root" "$root.log"
    step "imported $local_base_image"
}

if ((local_base)); then
    make_local_base
    base=$local_base_image
elif ! podman image exists "$base"; then
    if ! err=$(podman pull -q "$base" 2>&1); then
        log "cannot pull $base: $err"
        log "making a local base with debootstrap instead"
        make_local_base
        base=$local_base_image
    fi
fi

# How podman can run a container here, found by trying (a plain `podman run` on a normal host):
# * resource limits: podman asks the OCI runtime for more open files and processes than a
#   container host may grant ("setrlimit RLIMIT_NOFILE: Operation not permitted"); then ask for
#   this shell's hard limits, processes at most 32768 (podman 4.3 runs, and starts its
#   containers' monitor, with RLIMIT_NPROC 32768);
# * the runtime: crun (Debian's default) refuses hybrid cgroup v1/v2 hosts ("cgroups in hybrid
#   mode not supported, drop all controllers from cgroupv2"); then runc.
nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
[[ $nproc == unlimited ]] || ((nproc <= 32768)) || nproc=32768
limit_flags=()
[[ $nofile == unlimited ]] || limit_flags+=(--ulimit "nofile=$nofile:$nofile")
[[ $nproc == unlimited ]] || limit_flags+=(--ulimit "nproc=$nproc:$nproc")
engine=() limits=() errors=""
for runtime in "" runc; do
    [[ -z $runtime ]] || command -v "$runtime" >/dev/null || continue
    try=(podman ${runtime:+--runtime "$runtime"})
    for flags in "" limits; do
        extra=()
        [[ -z $flags ]] || extra=("${limit_flags[@]}")
        if err=$("${try[@]}" run --rm "${extra[@]}" "$base" true 2>&1); then
            engine=("${try[@]}") limits=("${extra[@]}")
            break 2
        fi
        errors+=$'\n'"  ${try[*]} run ${extra[*]}: $(grep -v level=warn <<<"$err")"
    done
done
((${#engine[@]})) || die "podman cannot run a container here:$errors"
[[ -z $errors ]] || log "podman ran a container as: ${engine[*]} run ${limits[*]} (what failed:$errors)"

step "building $tag from $base"
build=("${engine[@]}" build --format docker --file Containerfile --tag "$tag"
    --build-arg "BASE_IMAGE=$base" "${limits[@]}")
[[ -n $ca ]] && build+=(--secret "id=ca,src=$ca")
"${build[@]}" . >&2
built=$((SECONDS - t0))
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "built: $tag from $base in ${built} s"
echo "size: $size"
((run)) || exit 0

step "running the demo in $tag"
demo=$("${engine[@]}" run --rm "${limits[@]}" "$tag" demo) || die "the demo failed in $tag"
printf '%s\n' "$demo"
grep -q "incidents (most severe first)" <<<"$demo" || die "the demo printed no incidents"

# The daemon on the bundled NjRAT capture (a Zeek conn.log followed from its start), as
# compose.yaml runs it: the host's network (at a free loopback port), no capabilities, no new
# privileges, the state in a new named volume (seeded with the image's model).
data=$(mktemp -d)
name=netanomd-check-$$
cleanup() {
    podman rm -f "$name" >/dev/null 2>&1 || true
    podman volume rm -f "$name" >/dev/null 2>&1 || true
    rm -rf "$data"
}
trap cleanup EXIT
gzip -dc netanomd/data/attacks/njrat-001.conn.log.gz >"$data/conn.log"
chmod 0755 "$data" && chmod 0644 "$data/conn.log"
flows=$(grep -vc '^#' "$data/conn.log")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "running the daemon in $tag on 127.0.0.1:$port"
podman volume create "$name" >/dev/null
"${engine[@]}" run -d --name "$name" --network host "${limits[@]}" \
    --cap-drop ALL --security-opt no-new-privileges \
    -v "$name:/var/lib/netanomd" -v "$data:/data:ro,Z" \
    -e NETANOMD_SOURCES__0__TYPE=zeek_log -e NETANOMD_SOURCES__0__PATH=/data/conn.log \
    -e NETANOMD_SOURCES__0__FROM_START=true \
    -e "NETANOMD_SINKS__METRICS__LISTEN=127.0.0.1:$port" "$tag" >/dev/null

# /healthz until ready (200), then /metrics until the capture's flows are scored.
probe() {
    python3 - "$port" "$flows" <<'PY'
import re, sys, time, urllib.error, urllib.request as u
base, flows = f"http://127.0.0.1:{sys.argv[1]}", int(sys.argv[2])
deadline, answer = time.monotonic() + 90, "no answer"
while time.monotonic() < deadline:
    try:
        with u.urlopen(base + "/healthz", timeout=5) as r:
            answer = f"{r.status} {r.read().decode()}"
            break
    except urllib.error.HTTPError as e:
        answer = f"{e.code} {e.read().decode()}"
    except OSError as e:
        answer = f"no answer ({e})"
    time.sleep(1)
print("healthz:", answer)
scored = 0
while time.monotonic() < deadline and scored < flows:
    text = u.urlopen(base + "/metrics", timeout=5).read().decode()
    m = re.search(r"^netanomd_flows_scored_total (\S+)$", text, re.M)
    scored = int(float(m.group(1))) if m else 0
    time.sleep(0.5)
print(f"scored: {scored} of {flows}")
sys.exit(0 if answer.startswith("200 ") and scored == flows else 1)
PY
}
if ! probe; then
    podman logs "$name" >&2 || true
    die "the daemon in $tag did not become ready and score the capture"
fi
if out=$(podman healthcheck run "$name" 2>&1); then
    echo "healthcheck: healthy"
else
    podman logs "$name" >&2 || true
    die "the image's HEALTHCHECK failed: $out"
fi
"${engine[@]}" stop --time 70 "$name" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
[[ $code == 0 ]] || { podman logs "$name" >&2; die "the daemon exited $code on SIGTERM"; }
echo "stopped: exit 0"
# What it stored outlives the container: read from the volume by another one.
stored=$("${engine[@]}" run --rm "${limits[@]}" -v "$name:/var/lib/netanomd" "$tag" \
    incidents --db /var/lib/netanomd/alerts.db --json) || die "cannot read the stored incidents"
echo "stored incidents: $(grep -c '^{' <<<"$stored" || true)"
step "done"
echo "total: $((SECONDS - t0)) s"
