#!/usr/bin/env bash
# Bootstrapping wrapper for fresh machines and cron: creates .venv on first use (Python 3.11+), installs the
# project (again only when pyproject.toml changes), then runs `finops "$@"`.
#   ./finops.sh aws import-cur --config examples/config-demo.toml
#   ./finops.sh test [pytest args]     # the server packages the tests need (apt-get as root, else one line says
#                                      # what to install), the dev extras, then pytest
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

# --- what `./finops.sh test` needs besides the dev extras ------------------------------------------------------
# The test session starts its own throwaway servers (moto's S3, PostgreSQL, MariaDB) from installed binaries; pip
# cannot install the database servers, so they come from the system's packages: installed here with apt-get when
# we are root, otherwise one line says what to install and we stop. FINOPS_TEST_NO_INSTALL=1: never install.

have_postgresql_server() {
  command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

have_mariadb_server() {
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]
}

apt_install_quietly() {  # $@ = Debian packages; their services are never started (policy-rc.d exits 101)
  local log policy=/usr/sbin/policy-rc.d created_policy="" rc=0
  log="$(mktemp "${TMPDIR:-/tmp}/finops-apt-install.XXXXXX")"
  echo "finops.sh: installing $* with apt-get (needed by the tests; log: $log)" >&2
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
    trap "rm -f '$policy'" EXIT  # removed even when apt-get fails or we are interrupted
    trap 'exit 130' INT
    trap 'exit 143' TERM
  fi
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 "$@"
  } >"$log" 2>&1 || rc=$?
  if [ -n "$created_policy" ]; then
    rm -f "$policy"
    trap - EXIT INT TERM
  fi
  if [ "$rc" -ne 0 ]; then
    cat "$log" >&2
    echo "finops.sh: apt-get install $* failed (exit $rc; log: $log)" >&2
    exit 2
  fi
  rm -f "$log"
}

ensure_server_packages() {  # PostgreSQL and MariaDB server binaries
  local missing=()
  have_postgresql_server || missing+=(postgresql)
  have_mariadb_server || missing+=(mariadb-server)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "${FINOPS_TEST_NO_INSTALL:-}" = 1 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "finops.sh: the tests need PostgreSQL and MariaDB server binaries; install them: sudo apt-get install ${missing[*]}" >&2
    exit 2
  fi
  apt_install_quietly "${missing[@]}"
  if ! have_postgresql_server || ! have_mariadb_server; then
    echo "finops.sh: installed ${missing[*]} but initdb or mariadbd is still not found" >&2
    exit 2
  fi
}

# The BigQuery tests run bqemulator (PyPI) from a venv of its own, because it pins its own DuckDB; its DuckDB
# extensions come as wheels so that it never downloads them (tests/integration/bq_emulator.py installs them into
# the emulator's own HOME and starts it once per test session).
BQEMULATOR_VENV="${FINOPS_BQEMULATOR_VENV:-$HERE/.venv-emulators/bqemulator}"
BQEMULATOR_PACKAGES=(bqemulator==1.4.0 duckdb==1.5.5 duckdb-extension-spatial==1.5.5 duckdb-extension-avro==1.5.5 numpy)

# An emulator in a venv of its own, installed from PyPI on first use (again when its package list changes), or, with
# FINOPS_TEST_NO_INSTALL=1, one line naming the pip command.   ensure_emulator NAME VENV EXECUTABLE PACKAGE...
ensure_emulator() {
  local name="$1" venv="$2" executable="$3" log stamp want
  shift 3
  stamp="$venv/.finops-installed"
  want="$*"
  if [ -x "$venv/bin/$executable" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  if [ "${FINOPS_TEST_NO_INSTALL:-}" = 1 ]; then
    echo "finops.sh: the $name tests need $executable; install it: python3 -m venv $venv && $venv/bin/pip install $*" >&2
    exit 2
  fi
  echo "finops.sh: installing $* into $venv (the $name emulator the tests start)" >&2
  if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    "$(find_python)" -m venv "$venv"
  fi
  log="$venv/pip-install.log"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "finops.sh: installing $executable failed (log: $log); install it: $venv/bin/pip install $*" >&2
    exit 2
  fi
  echo "$want" > "$stamp"
}

# The Snowflake tests run fakesnow's server mode (PyPI) from a venv of its own: it pins DuckDB and sqlglot versions
# of its own. The httpfs wheel lets its DuckDB read s3:// without downloading anything (the test fixture,
# tests/integration/snowflake_server.py, installs it into the emulator's own HOME and starts it once per session).
FAKESNOW_VENV="${FINOPS_FAKESNOW_VENV:-$HERE/.venv-emulators/fakesnow}"
FAKESNOW_PACKAGES=("fakesnow[server]==0.11.18" duckdb==1.5.5 duckdb-extension-httpfs==1.5.5 "snowflake-connector-python<5")

ensure_test_services() {  # one step per kind of service the tests need; add new ones (emulators, ...) here
  ensure_server_packages
  ensure_emulator BigQuery "$BQEMULATOR_VENV" bqemulator "${BQEMULATOR_PACKAGES[@]}"
  ensure_emulator Snowflake "$FAKESNOW_VENV" fakesnow "${FAKESNOW_PACKAGES[@]}"
}

if [ "${1:-}" = "test" ]; then
  shift
  ensure_test_services  # before the venv: a machine that lacks a server package stops at once, in one line
  ensure_venv dev
  cd "$HERE"
  # one pytest worker per core (FINOPS_TEST_WORKERS=0: one process); each worker starts its own servers, on free
  # ports in folders of its own. A -n given after `test` wins.
  exec "$VENV/bin/python" -m pytest -n "${FINOPS_TEST_WORKERS:-auto}" "$@"
fi

ensure_venv all
# no cd: relative paths (--config, --source-dir, ./config.toml, ./data) are the caller's, as with ./finops
exec "$VENV/bin/python" "$HERE/finops" "$@"
