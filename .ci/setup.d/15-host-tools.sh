#!/usr/bin/env bash
# CI hook: Debian programs the tests run for real on the host: nftables (the firewall role's
# rules are checked with `nft -c`), gettext-base (envsubst, as PAPI's image runs it on its
# configuration), docker-registry (the distribution registry the provenance recorder resolves
# image digests from), gpg (apt key fingerprints), jq (the dashboard image's start command). Services are not started: each test runs
# its own. Idempotent.
set -euo pipefail
need=()
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v envsubst >/dev/null 2>&1 || need+=(gettext-base)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v gpg >/dev/null 2>&1 || need+=(gpg)
command -v jq >/dev/null 2>&1 || need+=(jq)
if ((${#need[@]})); then
  # No package may start a daemon on the CI host (no init system there anyway).
  policy=/usr/sbin/policy-rc.d
  created=false
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && created=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
  if $created; then rm -f "$policy"; fi
fi
echo "15-host-tools: nft, envsubst, docker-registry, gpg and jq present"
