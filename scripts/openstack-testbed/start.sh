#!/usr/bin/env bash
# Start the local OpenStack test-bed on 127.0.0.1 (after install.sh):
# MariaDB and RabbitMQ (private instances), keystone and placement under
# gunicorn, glance-api, neutron-server (ML2 + agentless driver + L3 in the
# server), cinder-api (volume quotas only), nova api/conductor/scheduler/compute
# (fake virt driver with two simulated NVIDIA GPUs). Every daemon runs in the
# background with a PID file in $STATE/run and a log in $STATE/log.
# Idempotent: running daemons are left alone, synced databases are not synced again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[[ -f $OS_VENV/.ai4os-stamp ]] || die "$OS_VENV is not installed: run $TB_DIR/install.sh first"
BIN=$OS_VENV/bin
ETC=$STATE/etc
mkdir -p "$STATE"/{run,log,etc,mysql,keystone,glance/images,glance/staging,glance/tasks,nova/instances,lock}
started=$SECONDS

start_daemon() {  # start_daemon NAME COMMAND...
    local name=$1; shift
    if pid_alive "$name"; then return 0; fi
    setsid "$@" >"$STATE/log/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE/run/$name.pid"
}

# ---------------------------------------------------------------- MariaDB
SOCK=$STATE/run/mysql.sock
if [[ ! -d $STATE/mysql/mysql ]]; then
    log "initialising MariaDB in $STATE/mysql"
    mariadb-install-db --no-defaults --datadir="$STATE/mysql" --user=root \
        --auth-root-authentication-method=socket --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1
fi
start_daemon mariadb mariadbd --no-defaults --user=root --datadir="$STATE/mysql" --socket="$SOCK" \
    --bind-address=$HOST --port=$DB_PORT --pid-file="$STATE/run/mariadbd.pid" --skip-name-resolve \
    --skip-log-bin --max-connections=1000 --innodb-buffer-pool-size=256M \
    --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --character-set-server=utf8mb4
# ---------------------------------------------------------------- RabbitMQ
export RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=$HOST RABBITMQ_NODE_PORT=5672 \
    ERL_EPMD_ADDRESS=$HOST RABBITMQ_DIST_PORT=25672 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
if ! rabbitmqctl -q status >/dev/null 2>&1; then
    start_daemon rabbitmq rabbitmq-server
fi

wait_for MariaDB 60 mariadb --no-defaults -S "$SOCK" -uroot -e 'select 1'
{
    for db in $DATABASES; do echo "CREATE DATABASE IF NOT EXISTS $db CHARACTER SET utf8mb4;"; done
    echo "CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';"
    echo "GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'127.0.0.1'; FLUSH PRIVILEGES;"
} | mariadb --no-defaults -S "$SOCK" -uroot

# ---------------------------------------------------------------- config files
auth_section() {  # keystonemiddleware / service client settings (services act as admin here)
    cat <<INI
auth_url = http://$HOST:$KEYSTONE_PORT/v3
www_authenticate_uri = http://$HOST:$KEYSTONE_PORT/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = admin
username = admin
password = $ADMIN_PASS
region_name = $REGION
INI
}
common_section() {
    cat <<INI
[oslo_concurrency]
lock_path = $STATE/lock
[oslo_messaging_notifications]
driver = noop
[oslo_policy]
enforce_new_defaults = true
enforce_scope = false
INI
}

cat >"$ETC/keystone.conf" <<INI
[DEFAULT]
use_stderr = true
[database]
connection = $(db_url keystone)
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = $STATE/keystone/fernet-keys
[fernet_receipts]
key_repository = $STATE/keystone/fernet-keys
[credential]
key_repository = $STATE/keystone/credential-keys
[identity]
# bcrypt's minimum cost: a loopback test-bed, and password logins stay fast on a busy machine
password_hash_rounds = 4
[auth]
methods = password,token,application_credential,mapped,openid
[openid]
remote_id_attribute = HTTP_OIDC_ISS
[cache]
# in-process cache: token validation by every service stays fast on a busy 2-core machine
enabled = true
backend = dogpile.cache.memory
$(common_section)
INI

cat >"$ETC/placement.conf" <<INI
[DEFAULT]
use_stderr = true
[placement_database]
connection = $(db_url placement)
[api]
auth_strategy = keystone
[keystone_authtoken]
$(auth_section)
$(common_section)
INI

cat >"$ETC/glance-api.conf" <<INI
[DEFAULT]
bind_host = $HOST
bind_port = $GLANCE_PORT
workers = 1
enabled_backends = fs:file
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $STATE/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $STATE/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $STATE/glance/tasks
[database]
connection = $(db_url glance)
[keystone_authtoken]
$(auth_section)
[paste_deploy]
flavor = keystone
config_file = $OS_VENV/etc/glance/glance-api-paste.ini
$(common_section)
INI

cat >"$ETC/neutron.conf" <<INI
[DEFAULT]
bind_host = $HOST
bind_port = $NEUTRON_PORT
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
transport_url = $(transport_url)
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
api_paste_config = $OS_VENV/etc/neutron/api-paste.ini
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
allow_overlapping_ips = true
state_path = $STATE/neutron
[database]
connection = $(db_url neutron)
[keystone_authtoken]
$(auth_section)
[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = ai4os_noagent
extension_drivers = port_security
[ml2_type_flat]
flat_networks = public
[ml2_type_vxlan]
vni_ranges = 1:1000
[securitygroup]
firewall_driver = noop
enable_security_group = true
[agent]
root_helper =
$(common_section)
INI

cat >"$ETC/cinder.conf" <<INI
[DEFAULT]
osapi_volume_listen = $HOST
osapi_volume_listen_port = $CINDER_PORT
osapi_volume_workers = 1
auth_strategy = keystone
transport_url = $(transport_url)
api_paste_config = $OS_VENV/etc/cinder/api-paste.ini
state_path = $STATE/cinder
enabled_backends =
[database]
connection = $(db_url cinder)
[keystone_authtoken]
$(auth_section)
$(common_section)
INI

cat >"$ETC/nova.conf" <<INI
[DEFAULT]
transport_url = $(transport_url)
compute_driver = ai4os_fake_gpu.FakeGpuDriver
host = ai4os-compute
my_ip = $HOST
state_path = $STATE/nova
instances_path = $STATE/nova/instances
enabled_apis = osapi_compute
osapi_compute_listen = $HOST
osapi_compute_listen_port = $NOVA_PORT
osapi_compute_workers = 1
[wsgi]
api_paste_config = $OS_VENV/etc/nova/api-paste.ini
[api]
auth_strategy = keystone
[api_database]
connection = $(db_url nova_api)
[database]
connection = $(db_url nova)
[keystone_authtoken]
$(auth_section)
[placement]
$(auth_section)
[neutron]
$(auth_section)
[glance]
region_name = $REGION
[cinder]
os_region_name = $REGION
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 3
[filter_scheduler]
enabled_filters = ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter,PciPassthroughFilter
[pci]
device_spec = {"vendor_id": "10de", "product_id": "20b5"}
alias = {"vendor_id": "10de", "product_id": "20b5", "device_type": "type-PCI", "name": "nvidia-a100"}
[compute]
resource_provider_association_refresh = 5
$(common_section)
INI

# ---------------------------------------------------------------- databases
KS=("$BIN/keystone-manage" --config-file "$ETC/keystone.conf")
NOVA_MANAGE=("$BIN/nova-manage" --config-file "$ETC/nova.conf")
sync_stamp=$(cat "$OS_VENV/.ai4os-stamp")
if [[ ! -f $STATE/.db-synced || $(cat "$STATE/.db-synced") != "$sync_stamp" ]]; then
    log "syncing databases (first start only)"
    "${KS[@]}" db_sync >"$STATE/log/sync-keystone.log" 2>&1 &
    ks_sync=$!
    sync_nova() {
        "${NOVA_MANAGE[@]}" api_db sync
        "${NOVA_MANAGE[@]}" cell_v2 map_cell0 --database_connection "$(db_url nova_cell0)"
        local cells
        cells=$("${NOVA_MANAGE[@]}" cell_v2 list_cells)  # not piped into grep -q: SIGPIPE would fail it
        grep -q ' cell1 ' <<<"$cells" ||
            "${NOVA_MANAGE[@]}" cell_v2 create_cell --name cell1 \
                --database_connection "$(db_url nova)" --transport-url "$(transport_url)"
        "${NOVA_MANAGE[@]}" db sync
    }
    sync_nova >"$STATE/log/sync-nova.log" 2>&1 &
    nova_sync=$!
    "$BIN/neutron-db-manage" --config-file "$ETC/neutron.conf" upgrade heads >"$STATE/log/sync-neutron.log" 2>&1 &
    neutron_sync=$!
    "$BIN/placement-manage" --config-file "$ETC/placement.conf" db sync >"$STATE/log/sync-placement.log" 2>&1 &
    placement_sync=$!
    "$BIN/glance-manage" --config-file "$ETC/glance-api.conf" db_sync >"$STATE/log/sync-glance.log" 2>&1 &
    glance_sync=$!
    "$BIN/cinder-manage" --config-file "$ETC/cinder.conf" db sync >"$STATE/log/sync-cinder.log" 2>&1 &
    cinder_sync=$!
fi
mkdir -p "$STATE/keystone/fernet-keys" "$STATE/keystone/credential-keys"
key_jobs=()
for kind in fernet credential; do
    if [[ ! -f $STATE/keystone/$kind-keys/0 ]]; then
        "${KS[@]}" "${kind}_setup" --keystone-user root --keystone-group root >>"$STATE/log/keystone-keys.log" 2>&1 &
        key_jobs+=($!)
    fi
done
if [[ -n ${ks_sync:-} ]]; then wait "$ks_sync" || die "keystone db_sync failed (see $STATE/log/sync-keystone.log)"; fi
for job in "${key_jobs[@]}"; do wait "$job" || die "keystone key setup failed (see $STATE/log/keystone-keys.log)"; done
"${KS[@]}" bootstrap --bootstrap-password "$ADMIN_PASS" --bootstrap-region-id "$REGION" \
    --bootstrap-admin-url "http://$HOST:$KEYSTONE_PORT/v3/" \
    --bootstrap-public-url "http://$HOST:$KEYSTONE_PORT/v3/" \
    --bootstrap-internal-url "http://$HOST:$KEYSTONE_PORT/v3/" >"$STATE/log/keystone-bootstrap.log" 2>&1

# ---------------------------------------------------------------- keystone, catalog
OS_KEYSTONE_CONFIG_FILES=$ETC/keystone.conf AI4OS_WSGI_SERVICE=keystone \
    start_daemon keystone "$BIN/gunicorn" --chdir "$TB_DIR" -w 1 --threads 4 -b "$HOST:$KEYSTONE_PORT" wsgi_app:application
wait_for keystone 90 http_ok "http://$HOST:$KEYSTONE_PORT/v3"
"$BIN/python" "$TB_DIR/catalog.py" >"$STATE/log/catalog.log" 2>&1 || die "catalog setup failed (see $STATE/log/catalog.log)"

if [[ -n ${nova_sync:-} ]]; then
    for job in placement glance neutron cinder nova; do
        var=${job}_sync
        wait "${!var}" || die "$job database sync failed (see $STATE/log/sync-$job.log)"
    done
    echo "$sync_stamp" >"$STATE/.db-synced"
    log "databases synced"
fi

# ---------------------------------------------------------------- the services
OS_PLACEMENT_CONFIG_DIR=$ETC AI4OS_WSGI_SERVICE=placement \
    start_daemon placement "$BIN/gunicorn" --chdir "$TB_DIR" -w 1 --threads 4 -b "$HOST:$PLACEMENT_PORT" wsgi_app:application
start_daemon glance "$BIN/glance-api" --config-file "$ETC/glance-api.conf"
start_daemon neutron "$BIN/neutron-server" --config-file "$ETC/neutron.conf"
start_daemon cinder "$BIN/cinder-api" --config-file "$ETC/cinder.conf"
wait_for RabbitMQ 120 rabbitmqctl -q status
rabbitmqctl -q list_users | grep -q '^openstack' || rabbitmqctl -q add_user openstack "$RABBIT_PASS" >/dev/null
rabbitmqctl -q set_permissions openstack '.*' '.*' '.*' >/dev/null
start_daemon nova-api "$BIN/nova-api" --config-file "$ETC/nova.conf"
start_daemon nova-conductor "$BIN/nova-conductor" --config-file "$ETC/nova.conf"
start_daemon nova-scheduler "$BIN/nova-scheduler" --config-file "$ETC/nova.conf"
wait_for placement 90 http_ok "http://$HOST:$PLACEMENT_PORT/"
start_daemon nova-compute "$BIN/nova-compute" --config-file "$ETC/nova.conf"

wait_for glance 120 http_ok "http://$HOST:$GLANCE_PORT/"
wait_for neutron 120 http_ok "http://$HOST:$NEUTRON_PORT/"
wait_for cinder 120 http_ok "http://$HOST:$CINDER_PORT/"
wait_for nova-api 120 http_ok "http://$HOST:$NOVA_PORT/"
log "all APIs up after $((SECONDS - started))s"
