#!/usr/bin/env bash
# CI hook: the local OpenStack test-bed for tests/cloud (keystone, placement,
# nova with simulated GPUs, glance, neutron, cinder-api; MariaDB and RabbitMQ
# from Debian). The venv is installed once and kept while its pins match;
# every CI run starts from an empty state (databases synced afresh) so no
# leftover of an earlier run can make the tests pass or fail.
set -euo pipefail
cd "$(dirname "$0")/../.."
tb=scripts/openstack-testbed

"$tb/install.sh"
"$tb/stop.sh" --purge
"$tb/start.sh"
"$tb/bootstrap.sh"
