#!/usr/bin/env bash
# CI hook: Apache with mod_auth_openidc from Debian, for the federated-login
# test (tests/cloud/test_checkin_federated.py puts it in front of the
# test-bed's Keystone, as EGI sites do). Only the binaries and modules
# (apache2-bin): no service is installed or started; the test runs its own.
# Idempotent.
set -euo pipefail
if [[ -x /usr/sbin/apache2 && -f /usr/lib/apache2/modules/mod_auth_openidc.so ]]; then
    echo "25-keystone-oidc: apache2 and mod_auth_openidc present"
    exit 0
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends apache2-bin libapache2-mod-auth-openidc
echo "25-keystone-oidc: apache2 and mod_auth_openidc installed"
