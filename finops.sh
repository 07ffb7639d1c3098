#!/usr/bin/env bash
# Bootstrapping wrapper for fresh machines and cron: creates .venv on first use (Python 3.11+), installs the
# project (again only when pyproject.toml changes), then runs `finops "$@"`.
#   ./finops.sh aws import-cur --config examples/config-demo.toml
#   ./finops.sh test [pytest args]     # dev extras + the services the tests need, then pytest
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${FINOPS_VENV:-$HERE/.venv}"

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "finops.sh: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)." >&2
  return 2
}

ensure_venv() {  # $1 = extras, e.g. "all" or "dev"
  local extras="$1" stamp
  if [ ! -x "$VENV/bin/python" ]; then
    echo "finops.sh: creating $VENV" >&2
    "$(find_python)" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
  fi
  stamp="$VENV/.finops-installed-$extras"
  local want
  want="$(cat "$HERE/pyproject.toml" | cksum)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "finops.sh: installing open-finops[$extras] into $VENV (first run or pyproject.toml changed)" >&2
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$HERE[$extras]" \
        >"$VENV/pip-install.log" 2>&1; then
      cat "$VENV/pip-install.log" >&2
      echo "finops.sh: installing open-finops[$extras] failed (log: $VENV/pip-install.log)" >&2
      exit 2
    fi
    echo "$want" > "$stamp"
  fi
}

if [ "${1:-}" = "test" ]; then
  shift
  ensure_venv dev
  # Server binaries for the conformance suite's real servers (started by the tests themselves).
  if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "finops.sh: PostgreSQL server binaries (initdb) not found; install the 'postgresql' package." >&2
  fi
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    echo "finops.sh: MariaDB server binaries (mariadbd) not found; install the 'mariadb-server' package." >&2
  fi
  cd "$HERE"
  exec "$VENV/bin/python" -m pytest "$@"
fi

ensure_venv all
# no cd: relative paths (--config, --source-dir, ./config.toml, ./data) are the caller's, as with ./finops
exec "$VENV/bin/python" "$HERE/finops" "$@"
