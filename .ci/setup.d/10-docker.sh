#!/usr/bin/env bash
# CI hook: Docker and debootstrap from Debian (if missing), dockerd started
# directly (no systemd on the CI machine), the test-bed image built (cached by
# content hash).  Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if ((${#need[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
scripts/testbed/dockerd.sh
scripts/testbed/build-image.sh
