# Shared by run.sh and test.sh: create .venv (Python 3.11) if missing and install the project.
# Sourced from the repository root; sets PATH so the venv's python, node and npm come first.

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  echo "Python 3.11 or 3.12 is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
}

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    local py
    py="$(pick_python)"
    echo "==> creating .venv with $("$py" --version 2>&1)"
    "$py" -m venv .venv
  fi
  echo "==> installing the project into .venv (pip install -e \".[test]\")"
  .venv/bin/python -m pip install -qq --disable-pip-version-check -e ".[test]"
  export PATH="$PWD/.venv/bin:$PATH"
  export REFLEX_USE_NPM=1
}
