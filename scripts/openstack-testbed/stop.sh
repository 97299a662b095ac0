#!/usr/bin/env bash
# Stop the local OpenStack test-bed (only the daemons start.sh started, by PID file).
# --purge also removes its state (databases, images, configs, clouds.yaml).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

stop_pid() {  # stop_pid NAME: TERM the process group from the PID file, KILL after 15 s
    local file=$STATE/run/$1.pid pid
    [[ -f $file ]] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 15); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

for name in nova-compute nova-scheduler nova-conductor nova-api cinder neutron glance placement keystone; do
    stop_pid "$name"
done
if [[ -f $STATE/run/rabbitmq.pid ]]; then
    RABBITMQ_NODENAME=rabbit@localhost rabbitmqctl -q stop >/dev/null 2>&1 || true
    stop_pid rabbitmq
fi
stop_pid mariadb
log "stopped"
if [[ ${1:-} == --purge ]]; then
    rm -rf "$STATE"
    log "removed $STATE"
fi
