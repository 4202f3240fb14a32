#!/usr/bin/env bash
# image-syncer in a few minutes, entirely on this machine:
#   1. build the release binary (and the demo seeder, examples/seed.rs);
#   2. start two throw-away registries on 127.0.0.1 (docker-registry, temp dirs, free ports);
#   3. push a small multi-arch image and a few single images to the "source" registry;
#   4. write auth.yaml + images.yaml from examples/*.yaml (addresses filled in), run image-syncer;
#   5. print source and destination digests side by side: they are the same;
#   6. run it again: everything is "unchanged", nothing is copied;
#   7. a run with --os/--arch: the destination gets the linux/arm64 entry only.
# Everything it creates is removed on exit. Usage (from the repository root): ./examples/demo.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -t 1 ]]; then
    B=$'\e[1m' D=$'\e[2m' R=$'\e[0m'
else
    B='' D='' R=''
fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$R"; }
note() { printf '%s%s%s\n' "$D" "$*" "$R"; }
die() { printf 'demo.sh: %s\n' "$*" >&2; exit 1; }

if ! command -v docker-registry >/dev/null 2>&1; then
    # A fresh Debian/Ubuntu machine: install the CNCF distribution registry (as root, or with
    # sudo). Elsewhere, say what is missing.
    if command -v apt-get >/dev/null 2>&1 && { [[ $(id -u) == 0 ]] || command -v sudo >/dev/null 2>&1; }; then
        SUDO=""; [[ $(id -u) == 0 ]] || SUDO="sudo"
        step "installing docker-registry (the CNCF distribution registry) with apt-get"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-registry >/dev/null
        # The package may start a system-wide registry on port 5000; the demo runs its own.
        $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
    command -v docker-registry >/dev/null 2>&1 || die "needs docker-registry: apt-get install -y docker-registry"
fi
command -v cargo >/dev/null 2>&1 || die "needs Rust's cargo (https://rustup.rs)"

# Everything talks to 127.0.0.1: make sure no proxy from the environment gets in the way.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

step "Building image-syncer and the demo seeder (release; the first build takes a few minutes)"
cargo build --release --bin image-syncer --example seed
BIN=target/release/image-syncer
SEED=target/release/examples/seed

WORK=$(mktemp -d "${TMPDIR:-/tmp}/image-syncer-demo.XXXXXX")
REGISTRY_PIDS=()
cleanup() {
    for pid in "${REGISTRY_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_registry NAME: starts docker-registry on a free port; sets REGISTRY_ADDR=127.0.0.1:PORT.
start_registry() {
    local name=$1 dir=$WORK/$1 port pid attempt
    mkdir -p "$dir/data"
    for attempt in 1 2 3 4 5; do
        port=$("$SEED" --free-port)
        cat >"$dir/config.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: "$dir/data"}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$port
  secret: image-syncer-demo-$name
EOF
        docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
        pid=$!
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break # exited: port taken meanwhile, try another
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                REGISTRY_PIDS+=("$pid")
                REGISTRY_ADDR=127.0.0.1:$port
                echo "$name registry: http://$REGISTRY_ADDR  (pid $pid, storage $dir/data)"
                return 0
            fi
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        note "attempt $attempt: docker-registry did not come up on port $port, trying another"
    done
    cat "$dir/registry.log" >&2
    die "could not start docker-registry (log above)"
}

step "Starting two local registries"
start_registry source
SRC=$REGISTRY_ADDR
start_registry destination
DST=$REGISTRY_ADDR

step "Seeding the source registry ($SEED $SRC)"
"$SEED" "$SRC"

# The tool expands ${VAR} in destinations, usernames and passwords, but not in sources or auth keys,
# so the real files are written with both addresses substituted.
fill() {
    local text
    text=$(<"$1")
    text=${text//'${SRC}'/$SRC}
    text=${text//'${DST}'/$DST}
    printf '%s\n' "$text" >"$2"
}
fill examples/auth.yaml "$WORK/auth.yaml"
fill examples/images.yaml "$WORK/images.yaml"
rules() { grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$1" | sed 's/^/    /'; }

step "The configuration (comments left out; see examples/auth.yaml and examples/images.yaml)"
echo "  $WORK/auth.yaml:"
rules "$WORK/auth.yaml"
echo "  $WORK/images.yaml:"
rules "$WORK/images.yaml"

SYNC=("$BIN" --auth "$WORK/auth.yaml" --images "$WORK/images.yaml" --proc 4)
step "First run: ${SYNC[*]}"
"${SYNC[@]}" || die "image-syncer failed"
note "(\"no credentials\": auth.yaml gives these registries no username, as the demo intends.)"

step "Source and destination digests, side by side"
"$SEED" --show \
    "$SRC/demo/multiarch:1.0" "$DST/mirror/multiarch:1.0" \
    "$SRC/demo/multiarch:latest" "$DST/mirror/multiarch:latest" \
    "$SRC/demo/single:v1" "$DST/mirror/single:v1" \
    "$SRC/demo/single:v2" "$DST/mirror/single:v2" \
    "$SRC/demo/single:v3" "$DST/renamed/app:stable" \
    "$SRC/demo/single:v1" "$DST/team-a/single:v1" \
    "$SRC/demo/single:v1" "$DST/team-b/single:v1" ||
    die "the destination does not match the source"
note "Same digest = byte-identical manifest; the multi-arch lists kept all their platforms."
note "demo/single:v3 was not in the tag list of rule 2: it only exists as renamed/app:stable."

step "Second run, nothing changed at the source: every image is \"unchanged\""
LOG2=$WORK/run2.log
"${SYNC[@]}" 2>&1 | tee "$LOG2"
[[ ${PIPESTATUS[0]} -eq 0 ]] || die "image-syncer failed"
# Count the per-image lines ("unchanged SRC -> DST: ...", "synced IMAGE"), not the totals line.
note "$(grep -cE '\] unchanged ' "$LOG2" || true) unchanged, $(grep -cE '\] synced ' "$LOG2" || true) copied: the second run only compared manifest digests."

step "Platform filter: only linux/arm64 of demo/multiarch:latest"
printf '%s/demo/multiarch:latest: %s/arm64-only/multiarch:latest\n' "$SRC" "$DST" >"$WORK/images-arm64.yaml"
rules "$WORK/images-arm64.yaml"
"$BIN" --auth "$WORK/auth.yaml" --images "$WORK/images-arm64.yaml" --os linux --arch arm64 ||
    die "image-syncer failed"
"$SEED" --show "$SRC/demo/multiarch:latest" "$DST/arm64-only/multiarch:latest" ||
    die "the filtered destination is not what was expected"
note "\"filtered\": the destination list holds only the linux/arm64 entry, byte-identical to the"
note "source's; a list with fewer entries is a new manifest, hence its new digest."

step "Done"
echo "Try it on your registries: copy examples/auth.yaml and examples/images.yaml, edit them, and run"
echo "  $BIN --auth auth.yaml --images images.yaml"
echo "(the two demo registries and their storage are removed now)"
