"""Load benchmark of the panel's pages: websocket clients that sign in for real and replay what the
browser sends (prints figures; not a test).

What a client is: a demo user signed in through the services (``auth.sign_in``, one session each),
then a Socket.IO connection to ``/_event`` exactly as Reflex's ``state.js`` opens it (a new tab
token in the query, the ``hydrate_and_load`` event with the session cookie's value in the CONNECT
packet). Navigating to a page is what the browser sends on a client-side link: the
``update_vars_internal`` of the synced cookie, then ``on_load_internal`` with the new path; a page
load is finished when the server says ``is_hydrated`` again. The frames were recorded from Chromium
on this panel (Playwright's ``framesent``) and are replayed here.

First one tab loads every page twice and previews once, not measured (a fresh server compiles
its queries on first use). Then the phases, each with all clients at once (``asyncio``, one
process, loopback only):

1. connect: every client connects and hydrates (on a path without on_load handlers, so this is the
   connection and the hydrate alone);
2. pages: each of home, subscriptions, one subscription (the demo's first licence subscription of
   the organisation) and analytics, ``--rounds`` times per client, one page after the other;
3. preview: the Resources tab's quantity preview (``preview_qty`` with the form's number: the
   browser sends the one event when the button is pressed, none while typing);
4. trivial: ``set_tab`` (sets one string: the cost of an event that touches nothing);
5. with ``--tabs``: that many short-lived tabs (connect, one page, disconnect), RSS before and
   after, and again after ``--expire`` seconds (start the server with
   ``REFLEX_REDIS_TOKEN_EXPIRATION`` equal to that, which this script does when it starts one).

For every phase: latency p50 / p95 / p99, events per second, and the server's CPU per event (the
user + system time of the server's process tree over the phase, divided by the events of the
phase; the phases do not overlap, so this is the cost of that handler). RSS is the sum over the
server's processes.

    .venv/bin/python bench/bench_load.py                        # 1, 10, 100 clients, SQLite, one worker
    .venv/bin/python bench/bench_load.py --clients 10 --rounds 5
    .venv/bin/python bench/bench_load.py --tabs 1000 --expire 60
    .venv/bin/python bench/bench_load.py --postgres --workers 3  # PostgreSQL + Redis, three workers
    .venv/bin/python bench/bench_load.py --base-url http://127.0.0.1:3000 --db-url sqlite:///...

It needs ``python-socketio``'s asyncio client, which needs ``aiohttp`` (the ``bench`` extra:
``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.panel_server import Panel, start_panel  # noqa: E402

PG_URL = os.environ.get("PANEL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("PANEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
EMAIL = "owner@demo.example"
NAMESPACE = "/_event"
EVENT_TIMEOUT = 120


@dataclass
class Names:
    """The event and var names the browser uses (from the app's own state classes)."""

    hydrate: str
    update_vars: str
    on_load: str
    secret_var: str
    trivial: str
    preview: str

    @classmethod
    def load(cls) -> "Names":
        import reflex as rx
        from reflex.state import OnLoadInternalState, UpdateVarsInternalState

        from noventiq_panel.state.base import BaseState
        from noventiq_panel.state.subscription_detail import SubscriptionDetailState

        detail = SubscriptionDetailState.get_full_name()
        return cls(
            hydrate=f"{rx.State.get_full_name()}.hydrate_and_load",
            update_vars=f"{UpdateVarsInternalState.get_full_name()}.update_vars_internal",
            on_load=f"{OnLoadInternalState.get_full_name()}.on_load_internal",
            secret_var=f"{BaseState.get_full_name()}.session_secret_rx_state_",
            trivial=f"{detail}.set_tab",
            preview=f"{detail}.preview_qty",
        )


def sign_in_sessions(db_url: str, n: int) -> tuple[list[str], int]:
    """``n`` fresh sessions of the demo owner, through the services; and a licence subscription of
    the owner's organisation (the one the detail page and the preview use)."""
    os.environ["REFLEX_DB_URL"] = db_url
    from sqlmodel import select

    from noventiq_panel.db import make_engine
    from noventiq_panel.models import Subscription
    from noventiq_panel.services.demo.demo import DEMO_PASSWORD
    from noventiq_panel.services.identity import auth
    from sqlmodel import Session

    engine = make_engine(db_url)
    secrets = []
    with Session(engine) as session:
        for i in range(n):
            secret, user = auth.sign_in(session, EMAIL, DEMO_PASSWORD, ip=f"127.0.{i // 250}.{i % 250 + 1}")
            secrets.append(secret)
        session.commit()
        info = auth.resolve(session, secrets[0])
        sub = session.exec(select(Subscription).where(Subscription.org_id == info.org_id,
                                                      Subscription.status == "active",
                                                      Subscription.quantity > 0)
                           .order_by(Subscription.id)).first()
    engine.dispose()
    if sub is None:
        raise SystemExit("the demo data has no active licence subscription")
    return secrets, sub.id


class Client:
    """One browser tab: a Socket.IO connection and the deltas it receives."""

    def __init__(self, base_url: str, names: Names, secret: str):
        import socketio

        self.base_url, self.names, self.secret = base_url, names, secret
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("event", self._on_update, namespace=NAMESPACE)
        self._waiter: tuple[callable, asyncio.Future] | None = None
        self.received_bytes = 0

    def _on_update(self, update):
        self.received_bytes += len(json.dumps(update, ensure_ascii=False))
        if self._waiter is None:
            return
        done, fut = self._waiter
        if not fut.done() and done(update.get("delta") or {}):
            fut.set_result(None)

    def _expect(self, done) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiter = (done, fut)
        return fut

    @staticmethod
    def _hydrated(delta: dict) -> bool:
        return any(v.get("is_hydrated_rx_state_") is True for v in delta.values())

    @staticmethod
    def _has(suffix: str):
        return lambda delta: any(any(k.startswith(suffix) for k in v) for v in delta.values())

    def _router(self, path: str, query: dict | None = None) -> dict:
        data = {"pathname": path, "asPath": path}
        if query:
            data["query"] = query
        return data

    async def connect(self, path: str = "/bench-no-page") -> float:
        token = str(uuid.uuid4())
        fut = self._expect(self._hydrated)
        event = {"name": self.names.hydrate, "payload": {"vars": {self.names.secret_var: self.secret}},
                 "router_data": self._router(path)}
        t0 = time.perf_counter()
        await self.sio.connect(f"{self.base_url}?token={token}", socketio_path="/_event", namespaces=[NAMESPACE],
                               transports=["websocket"], auth={"event": event},
                               headers={"Cookie": f"nq_session={self.secret}"}, wait_timeout=EVENT_TIMEOUT)
        await asyncio.wait_for(fut, EVENT_TIMEOUT)
        return time.perf_counter() - t0

    async def emit(self, name: str, payload: dict | None, path: str, query: dict | None = None) -> None:
        event = {"name": name, "router_data": self._router(path, query)}
        if payload:
            event["payload"] = payload
        await self.sio.emit("event", event, namespace=NAMESPACE)

    async def page(self, path: str, query: dict | None = None) -> float:
        fut = self._expect(self._hydrated)
        t0 = time.perf_counter()
        await self.emit(self.names.update_vars, {"vars": {self.names.secret_var: self.secret}}, path, query)
        await self.emit(self.names.on_load, None, path, query)
        await asyncio.wait_for(fut, EVENT_TIMEOUT)
        return time.perf_counter() - t0

    async def trivial(self, path: str, query: dict, value: str) -> float:
        fut = self._expect(self._has("tab"))
        t0 = time.perf_counter()
        await self.emit(self.names.trivial, {"tab": value}, path, query)
        await asyncio.wait_for(fut, EVENT_TIMEOUT)
        return time.perf_counter() - t0

    async def preview(self, path: str, query: dict, value: str) -> float:
        fut = self._expect(self._has("qty_step"))
        t0 = time.perf_counter()
        await self.emit(self.names.preview, {"form": {"quantity": value}}, path, query)
        await asyncio.wait_for(fut, EVENT_TIMEOUT)
        return time.perf_counter() - t0

    async def close(self) -> None:
        await self.sio.disconnect()


class Server:
    """The server's process tree: CPU time and resident memory."""

    def __init__(self, pid: int | None):
        self.root = psutil.Process(pid) if pid else None

    def _procs(self) -> list[psutil.Process]:
        if self.root is None:
            return []
        procs = [self.root, *self.root.children(recursive=True)]
        return [p for p in procs if "node" not in p.name()]

    def cpu(self) -> float:
        total = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def rss_mb(self) -> float:
        total = 0
        for p in self._procs():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    events: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    received: int = 0  # characters of the server's answers (the deltas, as JSON text)

    def line(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return f"{self.name:<26} (no events)"
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [lat[0]] * 99
        per_event = self.cpu / self.events * 1000 if self.events else 0
        return (f"{self.name:<26} {len(lat):>6} {q[49] * 1000:>9.1f} {q[94] * 1000:>9.1f} {q[98] * 1000:>9.1f}"
                f" {self.events / self.wall if self.wall else 0:>9.1f} {per_event:>10.2f}"
                f" {self.received / self.events / 1000 if self.events else 0:>8.1f}")


HEADER = (f"{'phase':<26} {'events':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'ev/s':>9} {'cpu ms/ev':>10} {'kB/ev':>8}")


async def run_phase(name: str, server: Server, clients: list[Client], work) -> Phase:
    """Run ``work(client)`` (a coroutine returning a list of latencies) on all clients at once."""
    phase = Phase(name)
    cpu0, t0, got0 = server.cpu(), time.perf_counter(), sum(c.received_bytes for c in clients)
    results = await asyncio.gather(*(work(c) for c in clients))
    phase.wall, phase.cpu = time.perf_counter() - t0, server.cpu() - cpu0
    phase.received = sum(c.received_bytes for c in clients) - got0
    for lat in results:
        phase.latencies.extend(lat)
    phase.events = len(phase.latencies)
    return phase


def _pages(sub_id: int) -> list[tuple[str, str, dict | None]]:
    """The four pages of the mix: (label, path, query)."""
    return [("home", "/", None), ("subscriptions", "/subscriptions", None),
            ("subscription", f"/subscriptions/{sub_id}", {"id": str(sub_id)}), ("analytics", "/analytics", None)]


async def warm_up(base_url: str, names: Names, secret: str, sub_id: int) -> None:
    """One tab that loads every page and previews once, not measured: a fresh server compiles its
    queries and imports lazily on first use, which would otherwise land in the first phase."""
    c = Client(base_url, names, secret)
    await c.connect()
    for _round in range(2):
        for _label, path, query in _pages(sub_id):
            await c.page(path, query)
    await c.preview(f"/subscriptions/{sub_id}", {"id": str(sub_id)}, "2")
    await c.close()


async def bench_clients(base_url: str, names: Names, secrets: list[str], sub_id: int, server: Server,
                        rounds: int) -> list[Phase]:
    clients = [Client(base_url, names, s) for s in secrets]
    detail = (f"/subscriptions/{sub_id}", {"id": str(sub_id)})
    pages = _pages(sub_id)
    phases = [await run_phase("connect+hydrate", server, clients, lambda c: _one(c.connect()))]

    async def mix(c: Client):
        out = []
        for _ in range(rounds):
            for _label, path, query in pages:
                out.append(await c.page(path, query))
        return out
    phases.append(await run_phase("page load (4-page mix)", server, clients, mix))
    for label, path, query in pages:
        async def one_page(c: Client, path=path, query=query):
            return [await c.page(path, query) for _ in range(rounds)]
        phases.append(await run_phase(f"  page {label}", server, clients, one_page))

    await asyncio.gather(*(c.page(*detail) for c in clients))  # on the subscription's page, not measured

    async def previews(c: Client):
        return [await c.preview(*detail, str(2 + i % 3)) for i in range(rounds)]
    phases.append(await run_phase("quantity preview", server, clients, previews))

    async def trivial(c: Client):
        return [await c.trivial(*detail, ("resources", "overview")[i % 2]) for i in range(rounds)]
    phases.append(await run_phase("trivial handler", server, clients, trivial))
    await asyncio.gather(*(c.close() for c in clients))
    return phases


async def _one(coro) -> list[float]:
    return [await coro]


async def bench_tabs(base_url: str, names: Names, secrets: list[str], server: Server, tabs: int,
                     expire: int) -> None:
    """Short-lived tabs: connect on the home page, open subscriptions, close. RSS before, after and
    after the states' expiry."""
    rss0 = server.rss_mb()
    sem = asyncio.Semaphore(20)

    async def tab(i: int):
        async with sem:
            c = Client(base_url, names, secrets[i % len(secrets)])
            await c.connect("/")
            await c.page("/subscriptions")
            await c.close()
    t0 = time.perf_counter()
    await asyncio.gather(*(tab(i) for i in range(tabs)))
    rss1 = server.rss_mb()
    print(f"\n{tabs} short-lived tabs in {time.perf_counter() - t0:.1f} s: server RSS {rss0:.0f} MiB before, "
          f"{rss1:.0f} MiB after", flush=True)
    if expire:
        await asyncio.sleep(expire + 15)
        # one more connection: expiry runs while the server is active
        c = Client(base_url, names, secrets[0])
        await c.connect("/")
        await c.close()
        rss2 = server.rss_mb()
        print(f"after the states expired ({expire} s): {rss2:.0f} MiB", flush=True)
        await asyncio.gather(*(tab(i) for i in range(tabs)))
        rss3 = server.rss_mb()
        print(f"another {tabs} tabs: {rss3:.0f} MiB (growth {rss3 - rss1:+.0f} MiB over the first round)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="1,10,100", help="comma-separated client counts (default 1,10,100)")
    ap.add_argument("--rounds", type=int, default=3, help="page rounds / previews per client and phase")
    ap.add_argument("--tabs", type=int, default=0, help="short-lived tabs for the memory check (e.g. 1000)")
    ap.add_argument("--expire", type=int, default=0, help="state expiry in seconds for the memory check")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL + Redis (PANEL_TEST_PG_URL/REDIS_URL)")
    ap.add_argument("--workers", type=int, default=1, help="server workers (more than one needs --postgres)")
    ap.add_argument("--base-url", help="a running panel (then --db-url names its database)")
    ap.add_argument("--db-url", help="the running panel's database")
    ap.add_argument("--server-pid", type=int, help="the running panel's process (for CPU and RSS)")
    args = ap.parse_args()
    counts = [int(x) for x in args.clients.split(",") if x.strip()]

    panel: Panel | None = None
    tmp = Path(tempfile.mkdtemp(prefix="nq-load-"))
    if args.base_url:
        base_url, db_url, pid = args.base_url.rstrip("/"), args.db_url, args.server_pid
        if not db_url:
            raise SystemExit("--base-url needs --db-url")
    else:
        env: dict[str, str] = {}
        db_url = None
        if args.postgres:
            db_url = PG_URL
            env["REFLEX_REDIS_URL"] = REDIS_URL
            env["GRANIAN_WORKERS"] = str(args.workers)
        elif args.workers > 1:
            raise SystemExit("several workers share states through Redis: add --postgres")
        if args.expire:
            env["REFLEX_REDIS_TOKEN_EXPIRATION"] = str(args.expire)
        panel = start_panel(tmp, db_url=db_url, env_extra=env)
        base_url, db_url, pid = panel.base_url, panel.db_url, panel.proc.pid
    try:
        names = Names.load()
        secrets, sub_id = sign_in_sessions(db_url, max(counts + [1]))
        server = Server(pid)
        store = "PostgreSQL + Redis" if db_url.startswith("postgresql") else "SQLite"
        print(f"panel {base_url} on {store}, {args.workers} worker(s), {os.cpu_count()} CPUs; "
              f"{args.rounds} rounds; server RSS {server.rss_mb():.0f} MiB", flush=True)
        asyncio.run(warm_up(base_url, names, secrets[0], sub_id))
        for n in counts:
            phases = asyncio.run(bench_clients(base_url, names, secrets[:n], sub_id, server, args.rounds))
            print(f"\n{n} client(s)\n{HEADER}", flush=True)
            for ph in phases:
                print(ph.line(), flush=True)
            print(f"server RSS {server.rss_mb():.0f} MiB", flush=True)
        if args.tabs:
            asyncio.run(bench_tabs(base_url, names, secrets, server, args.tabs, args.expire))
    finally:
        if panel is not None:
            panel.stop()


if __name__ == "__main__":
    main()
