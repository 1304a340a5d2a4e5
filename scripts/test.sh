#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine and run the whole test suite.
#
#   bash scripts/test.sh [extra pytest arguments]
#
# Installs (as root, or through sudo) Debian's chromium, chromium-driver, fonts-dejavu-core and
# poppler-utils when missing, creates .venv, installs the project with its test extras and runs
# pytest over tests/ on every CPU (pytest-xdist). Exits non-zero when anything fails. PostgreSQL
# variants of the database tests run against PANEL_TEST_PG_URL (default
# postgresql+psycopg://postgres@127.0.0.1:5432/test) and are skipped, with the reason, when no
# server answers there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(chromium chromium-driver fonts-dejavu-core poppler-utils)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The PostgreSQL variants need a server; start the local cluster if it is installed but down.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "==> starting the local PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

source scripts/_venv.sh
ensure_venv
mkdir -p artifacts/screenshots

# pytest-xdist: one worker per CPU (PANEL_TEST_WORKERS overrides; 0 runs in this process). The
# browser tests stay together on one worker (--dist loadgroup, xdist_group "e2e") and start first,
# so the server's build and the browser run beside the rest of the suite. Arguments given to this
# script come after these and win (e.g. -n 0).
WORKERS="${PANEL_TEST_WORKERS:-logical}"
echo "==> running the test suite (pytest-xdist workers: $WORKERS)"
set +e
python -m pytest -ra -n "$WORKERS" --dist loadgroup "$@"
status=$?
set -e
if [ "$status" -eq 0 ]; then
  echo "==> all tests passed"
else
  echo "==> TESTS FAILED (pytest exit code $status)" >&2
fi
exit "$status"
