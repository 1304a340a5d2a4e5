"""The layering of the package, as pyproject's ``[tool.importlinter]`` contracts write it down:
pages → components → state → services → models; services never import Reflex, the state or the
components; the service areas and the jobs form no import cycle; jobs and the CLI use services."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
