#!/usr/bin/env bash
# CI hook: stop the local OpenStack test-bed started by .ci/setup.d/20-openstack.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
scripts/openstack-testbed/stop.sh
