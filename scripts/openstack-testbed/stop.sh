#!/usr/bin/env bash
# Stop the local OpenStack test-bed (only the daemons start.sh started, by PID file).
# --purge also removes its state (databases, images, configs, clouds.yaml).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

signal_pid() {  # signal_pid SIGNAL NAME: signal the process group started from the PID file
    local file=$STATE/run/$2.pid pid
    [[ -f $file ]] || return 1
    pid=$(cat "$file")
    kill -0 "$pid" 2>/dev/null || return 1
    kill "-$1" -- "-$pid" 2>/dev/null || kill "-$1" "$pid" 2>/dev/null
}

# The OpenStack services together: TERM, up to 20 s to exit, then KILL.
names="nova-compute nova-scheduler nova-conductor nova-api cinder neutron glance placement keystone"
for name in $names; do signal_pid TERM "$name" || true; done
for _ in $(seq 20); do
    alive=0
    for name in $names; do pid_alive "$name" && alive=1; done
    ((alive)) || break
    sleep 1
done
for name in $names; do signal_pid KILL "$name" || true; rm -f "$STATE/run/$name.pid"; done
if [[ -f $STATE/run/rabbitmq.pid ]]; then
    RABBITMQ_NODENAME=rabbit@localhost rabbitmqctl -q stop >/dev/null 2>&1 || signal_pid TERM rabbitmq || true
    rm -f "$STATE/run/rabbitmq.pid"
fi
if signal_pid TERM mariadb; then
    for _ in $(seq 30); do pid_alive mariadb || break; sleep 1; done
    signal_pid KILL mariadb || true
fi
rm -f "$STATE/run/mariadb.pid"
log "stopped"
if [[ ${1:-} == --purge ]]; then
    rm -rf "$STATE"
    log "removed $STATE"
fi
