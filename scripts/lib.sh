# shellcheck shell=bash
# Shared set-up for scripts/deploy and scripts/test: OS packages, the pinned virtualenv and
# the link that lets `mattermost_ops.stack.*` resolve to this checkout. Sourced, not run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
export MMOPS_ROOT="$ROOT"   # the checkout, for test inventories
export PATH="$VENV/bin:$PATH"
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# ensure_os_packages NAME... : install the Debian packages that are missing.
ensure_os_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing OS packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ensure_venv REQUIREMENTS_FILE : a virtualenv with exactly the pinned dependencies. Runs in `||`
# contexts (stages), where `set -e` does not apply: every step is chained, so a failure fails it.
ensure_venv() {
  local digest
  ensure_os_packages python3 python3-venv ca-certificates git || return 1
  digest=$(cat "$ROOT/$1" "$ROOT/requirements.txt" "$ROOT/constraints.txt" | sha256sum | cut -c1-16)
  # A virtualenv left half-made by an interrupted run (no pip) is made again.
  [ -x "$VENV/bin/pip" ] || { rm -rf "$VENV" && python3 -m venv "$VENV"; } || return 1
  if [ ! -e "$VENV/.installed-$digest" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/$1" -c "$ROOT/constraints.txt" \
      && touch "$VENV/.installed-$digest" || return 1
  fi
  link_collection
}

# link_collection : let `mattermost_ops.stack.*` resolve to this checkout (see ansible.cfg).
link_collection() {
  mkdir -p "$ROOT/.collections/ansible_collections/mattermost_ops"
  ln -sfn "$ROOT" "$ROOT/.collections/ansible_collections/mattermost_ops/stack"
}

# stage NAME COMMAND... : run one stage, print its duration, remember the outcome.
STAGES=()
FAILED=0
stage() {
  local name=$1 t0=$SECONDS rc=0
  shift
  echo "=== stage $name: start"
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then
    STAGES+=("$(printf '%-10s ok     %5ss' "$name" $((SECONDS - t0)))")
  else
    STAGES+=("$(printf '%-10s FAILED %5ss (exit %s)' "$name" $((SECONDS - t0)) "$rc")")
    FAILED=1
  fi
  echo "=== stage $name: exit $rc after $((SECONDS - t0)) s"
}

# print_stages : the summary; its exit status is non-zero when any stage failed.
print_stages() {
  echo "=== stage durations"
  printf '  %s\n' "${STAGES[@]}"
  return "$FAILED"
}
