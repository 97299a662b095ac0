# shellcheck shell=bash
# Settings shared by the test-bed scripts (sourced, not run).
# Everything listens on 127.0.0.1 only; the passwords below guard nothing
# but this throw-away loopback test-bed.

TB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OS_VENV=${AI4OS_OPENSTACK_VENV:-/opt/ai4os-openstack}
STATE=${AI4OS_OPENSTACK_STATE:-/var/tmp/ai4os-openstack}
CLOUDS_FILE=${AI4OS_OPENSTACK_CLOUDS:-$STATE/clouds.yaml}
PYTHON=${AI4OS_OPENSTACK_PYTHON:-python3}

HOST=127.0.0.1
DB_PORT=13306
DB_USER=openstack
DB_PASS=ai4os-testbed-db
RABBIT_PASS=ai4os-testbed-mq
ADMIN_PASS=ai4os-testbed-admin
REGION=RegionOne

KEYSTONE_PORT=5000
PLACEMENT_PORT=8778
NOVA_PORT=8774
GLANCE_PORT=9292
NEUTRON_PORT=9696
CINDER_PORT=8776

DATABASES="keystone placement glance nova_api nova nova_cell0 neutron cinder"
SERVICES="keystone placement glance neutron cinder nova-api nova-conductor nova-scheduler nova-compute"

db_url() { echo "mysql+pymysql://$DB_USER:$DB_PASS@$HOST:$DB_PORT/$1?charset=utf8"; }
transport_url() { echo "rabbit://openstack:$RABBIT_PASS@$HOST:5672/"; }
log() { echo "[openstack-testbed $(date +%H:%M:%S)] $*"; }
die() { echo "[openstack-testbed] ERROR: $*" >&2; exit 1; }

# wait_for NAME SECONDS COMMAND...: poll COMMAND once a second.
wait_for() {
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    until "$@" >/dev/null 2>&1; do
        if (( SECONDS - start > limit )); then
            die "$name not ready after ${limit}s (logs: $STATE/log/)"
        fi
        sleep 1
    done
    log "$name ready after $((SECONDS - start))s"
}

http_ok() { "$PYTHON" - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=3)
except urllib.error.HTTPError as exc:
    sys.exit(0 if exc.code < 500 else 1)
except Exception:
    sys.exit(1)
PY
}

pid_alive() { [[ -f $STATE/run/$1.pid ]] && kill -0 "$(cat "$STATE/run/$1.pid")" 2>/dev/null; }
