#!/usr/bin/env bash
# The OIDC tests start a real OpenID provider (npm package oidc-provider, run by
# tests/oidc/op/op.mjs). This hook installs Node.js and npm from Debian when
# missing and the provider from npm into tests/oidc/op/node_modules.
# Idempotent; the tests start and stop the provider themselves.
set -euo pipefail
cd "$(dirname "$0")/../.."
op_dir=tests/oidc/op

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
  echo "30-oidc: Node.js $(node --version) is too old for oidc-provider (needs 18 or later)" >&2
  exit 1
fi
if ! (cd "$op_dir" && node -e "import('oidc-provider').then(() => process.exit(0), () => process.exit(1))"); then
  npm install --prefix "$op_dir" --no-audit --no-fund --no-package-lock --loglevel=error
fi
(cd "$op_dir" && node -e "import('oidc-provider').then(() => console.log('30-oidc: oidc-provider ready'))")
