#!/usr/bin/env bash
# The test command: installs the Debian packages the integration tests start (the CNCF
# distribution registry, htpasswd, and skopeo — a client we did not write, for the OCI layout
# interoperability tests) when they are missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v script >/dev/null 2>&1 || need+=(bsdutils) # a pseudo-terminal for the live display test
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (the tests start real registries)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian starts the packaged service; the tests run their own registries on random ports.
  $SUDO systemctl stop docker-registry >/dev/null 2>&1 || true
fi
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
exec cargo test --locked "$@"
