#!/usr/bin/env bash
# Start the Docker daemon directly (the CI machines and the shared dev host have
# no systemd as PID 1) unless one already answers.  Idempotent; waits until the
# daemon is ready.  Log: ${AI4OS_DOCKERD_LOG:-/var/log/ai4os-dockerd.log}.
set -euo pipefail

log=${AI4OS_DOCKERD_LOG:-/var/log/ai4os-dockerd.log}
wait_s=${AI4OS_DOCKERD_WAIT:-60}

if docker info >/dev/null 2>&1; then
    echo "dockerd: already running"
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "dockerd: not installed (apt-get install docker.io)" >&2
    exit 1
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
    mkdir -p "$(dirname "$log")"
    # setsid: keep the daemon alive after the calling shell/CI step ends.
    setsid dockerd >>"$log" 2>&1 </dev/null &
fi
for _ in $(seq "$wait_s"); do
    if docker info >/dev/null 2>&1; then
        echo "dockerd: ready"
        exit 0
    fi
    sleep 1
done
echo "dockerd: not ready after ${wait_s}s, see $log" >&2
tail -n 20 "$log" >&2 || true
exit 1
