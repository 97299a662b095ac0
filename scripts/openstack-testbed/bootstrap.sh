#!/usr/bin/env bash
# Bootstrap the running test-bed (project, member user + application
# credential, quotas, flavors incl. GPU flavors, images, networks, key pair,
# the egi.eu identity provider) and write clouds.yaml to $CLOUDS_FILE.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ADMIN_PASS=$ADMIN_PASS "$OS_VENV/bin/python" "$TB_DIR/bootstrap.py" "$CLOUDS_FILE"
