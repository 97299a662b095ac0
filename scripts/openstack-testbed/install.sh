#!/usr/bin/env bash
# Install the local OpenStack test-bed: MariaDB and RabbitMQ from Debian, and
# OpenStack 2025.1 (keystone, placement, nova, glance, neutron, cinder-api)
# from PyPI into its own venv, pinned by pins-*.txt. Idempotent: a venv whose
# stamp matches the pins and drivers is kept as it is.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

need_debs=()
for pkg in mariadb-server rabbitmq-server; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need_debs+=("$pkg")
done
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_debs+=(python3-venv)
if (( ${#need_debs[@]} )); then
    log "apt-get install ${need_debs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -q --no-install-recommends "${need_debs[@]}" >/dev/null
fi
# Debian's maintainer scripts may have started the daemons; the test-bed runs its own.
for daemon in mariadbd beam.smp; do
    pids=$(pgrep -x "$daemon" -u mysql,rabbitmq || true)
    [[ -n $pids && ! -f $STATE/run/mariadb.pid && ! -f $STATE/run/rabbitmq.pid ]] && log "note: a system $daemon is running ($pids)"
done

stamp=$(cat "$0" "$TB_DIR"/pins-*.txt "$TB_DIR"/drivers/ai4os_testbed_drivers/*.py \
        "$TB_DIR"/drivers/nova_virt_shim.py | sha256sum | cut -d' ' -f1)
if [[ -f $OS_VENV/.ai4os-stamp && $(cat "$OS_VENV/.ai4os-stamp") == "$stamp" ]]; then
    log "venv $OS_VENV is up to date"
    exit 0
fi

log "creating venv $OS_VENV (OpenStack 2025.1, a few minutes)"
[[ -x $OS_VENV/bin/python ]] || "$PYTHON" -m venv "$OS_VENV"
pip=("$OS_VENV/bin/pip" install -q --disable-pip-version-check)
"${pip[@]}" -r "$TB_DIR/pins-2025.1.txt"
"${pip[@]}" -c "$TB_DIR/pins-2025.1.txt" -r "$TB_DIR/pins-cinder-2025.1.txt"

# The drivers: the package, its ML2 entry point (neutron loads mechanism
# drivers by entry-point name) and the shim nova needs inside nova.virt.
site=$("$OS_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$site/ai4os_testbed_drivers" "$site"/ai4os_testbed_drivers-*.dist-info
cp -r "$TB_DIR/drivers/ai4os_testbed_drivers" "$site/"
info="$site/ai4os_testbed_drivers-1.0.0.dist-info"
mkdir -p "$info"
printf 'Metadata-Version: 2.1\nName: ai4os-testbed-drivers\nVersion: 1.0.0\n' > "$info/METADATA"
printf '[neutron.ml2.mechanism_drivers]\nai4os_noagent = ai4os_testbed_drivers.ml2:NoAgentMechanismDriver\n' \
    > "$info/entry_points.txt"
install -m 0644 "$TB_DIR/drivers/nova_virt_shim.py" "$site/nova/virt/ai4os_fake_gpu.py"
echo "$stamp" > "$OS_VENV/.ai4os-stamp"
log "installed into $OS_VENV"
