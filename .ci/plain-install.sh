#!/usr/bin/env bash
# The kit as operators and the accounting node install it: build the wheel, install it
# into fresh venvs and run what those machines run. Fails on the first command that fails.
#   - no extras (operator workstation): --help, --help of every command, check and plan
#     of the sample inventory (init copies it from the wheel), contract --help;
#   - [accounting] alone (accounting node): ai4os-kit accounting --help and each of its commands' --help.
# Usage: .ci/plain-install.sh [WORKDIR]   (default: a temporary directory, removed afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${1:-$(mktemp -d)}
[ -n "${1:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
python=${PYTHON:-python3}

step() { echo "== plain install: $*"; }
run() { echo "\$ $*"; "$@" >"$work/out.txt" 2>&1 || { cat "$work/out.txt"; echo "FAILED: $*" >&2; exit 1; }; }

step "build the wheel"
"$python" -m pip wheel -q --no-deps -w "$work/dist" "$repo"
wheel=$(ls "$work"/dist/ai4os_kit-*.whl)

# The two venvs install in parallel (most of the time is pip resolving and unpacking).
step "install $(basename "$wheel") into two fresh venvs: no extras, and [accounting] alone"
"$python" -m venv "$work/plain" && "$python" -m venv "$work/accounting"
"$work/plain/bin/pip" install -q "$wheel" >"$work/plain.log" 2>&1 & p1=$!
"$work/accounting/bin/pip" install -q "$wheel[accounting]" >"$work/accounting.log" 2>&1 & p2=$!
wait $p1 || { grep -v '^WARNING: Location' "$work/plain.log"; echo "FAILED: pip install (no extras)" >&2; exit 1; }
wait $p2 || { grep -v '^WARNING: Location' "$work/accounting.log"; echo "FAILED: pip install [accounting]" >&2; exit 1; }

# Run outside the checkout so that nothing is read from it.
cd "$work"
kit=("$work/plain/bin/ai4os-kit")
step "no extras: every command's --help"
run "${kit[@]}" --help
commands=$("${kit[@]}" --help | awk '/^positional/ {on=1; next} on && /^    [a-z]/ {print $1} /^options/ {on=0}')
[ -n "$commands" ] || { echo "FAILED: no commands listed by --help" >&2; exit 1; }
for c in $commands; do run "${kit[@]}" "$c" --help; done
step "no extras: init, check and plan of the sample inventory (from the wheel)"
run "${kit[@]}" init "$work/inv"
[ -L "$work/inv/group_vars/all/platform.yml" ] || { echo "FAILED: init did not link platform.yml into group_vars/all" >&2; exit 1; }
run "${kit[@]}" check "$work/inv"
run "${kit[@]}" plan "$work/inv"
[ -s "$work/inv/hosts.yml" ] || { echo "FAILED: plan wrote no hosts.yml" >&2; exit 1; }
step "no extras: an accounting command says which extra it needs (no traceback)"
if "${kit[@]}" accounting collect --config /nonexistent >"$work/out.txt" 2>&1; then
  echo "FAILED: accounting collect succeeded without the accounting extra" >&2; exit 1
fi
grep -q "whl\[accounting\]" "$work/out.txt" || { cat "$work/out.txt"; echo "FAILED: no hint at the accounting extra" >&2; exit 1; }
! grep -q "Traceback" "$work/out.txt" || { cat "$work/out.txt"; echo "FAILED: traceback" >&2; exit 1; }

acc=("$work/accounting/bin/ai4os-kit")
step "[accounting] alone: ai4os-kit accounting --help and its commands"
run "${acc[@]}" accounting --help
subs=$("${acc[@]}" accounting --help | awk '/^positional/ {on=1; next} on && /^    [a-z]/ {print $1} /^options/ {on=0}')
[ -n "$subs" ] || { echo "FAILED: no accounting commands listed" >&2; exit 1; }
for s in $subs; do run "${acc[@]}" accounting "$s" --help; done
"$work/accounting/bin/python" -c "import ai4os_kit.accounting.apel, ai4os_kit.accounting.summary, ai4os_kit.accounting.nomad_client, ai4os_kit.accounting.ssmqueue, ai4os_kit.accounting.report"
step "OK"
