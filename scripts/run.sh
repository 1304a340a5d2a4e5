#!/usr/bin/env bash
# Set up and run the panel on embedded defaults: an SQLite file (data/panel.db), the demo data,
# mail kept in the outbox. Prints the URL and the demo logins, then serves the panel on one port.
#
#   bash scripts/run.sh
#
# Any PANEL_* / REFLEX_* setting from the README may be exported before running it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv

echo "==> migrating the database"
noventiq-panel init
# Demo users have a published password: the demo data goes only into the embedded default
# database, or where asked explicitly (bash scripts/run.sh --demo); `demo` itself also refuses a
# database that holds organisations or users it did not create.
if [ -z "${REFLEX_DB_URL:-}" ] || [ "${1:-}" = "--demo" ]; then
  echo "==> loading the demo data"
  noventiq-panel demo
else
  echo "==> REFLEX_DB_URL is set: no demo data loaded (pass --demo to load it into that database)"
fi

cat <<MSG

==> starting the panel (the first start builds the frontend: a few minutes)
    Open $(python -c 'from noventiq_panel.config import get_settings; print(get_settings().base_url)') and sign in
    with one of the logins above (password demo12345). Stop with Ctrl+C.

MSG
exec reflex run --env prod --single-port
