"""Importing the usage files an operator (or a vendor's transfer) drops into a folder.

Every ``*.csv``/``*.csv.gz`` in the folder (default ``PANEL_USAGE_IMPORT_DIR``) is first claimed by
moving it into ``processing/`` (an atomic rename: two runs never take the same file), imported
(``usage_import.import_file``), then moved to ``done/`` with a ``.report.json`` beside it, or to
``failed/`` when the whole file could not be read (unknown format, missing columns, not UTF-8). A
file left in ``processing/`` for :data:`STALE_CLAIM_SECONDS` (its run died) is taken again:
re-importing adds nothing twice.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

from sqlmodel import Session

from noventiq_panel.config import get_settings
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core.errors import InvalidInput
from noventiq_panel.services.usage.usage_import import ImportReport, import_file

log = logging.getLogger(__name__)

STALE_CLAIM_SECONDS = 6 * 3600  # a file left in processing/ this long was claimed by a run that died


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{utcnow().strftime('%Y%m%dT%H%M%S%f')}{path.suffix}"
    shutil.move(str(path), str(target))
    return target


def _is_usage_file(p: Path) -> bool:
    name = p.name.lower()
    return p.is_file() and (name.endswith(".csv") or name.endswith(".csv.gz"))


def import_folder(session: Session, folder: str | os.PathLike | None = None, *, now: datetime | None = None,
                  fmt: str | None = None) -> list[ImportReport]:
    """Import every usage file in ``folder`` (default: ``PANEL_USAGE_IMPORT_DIR``) as the module
    documentation says; returns one report per file taken (``error`` set for a failed one)."""
    folder = Path(folder or get_settings().usage_import_dir or "")
    if not str(folder) or not folder.is_dir():
        raise InvalidInput(f"not a folder: {folder}", key="error.usage_folder")
    processing = folder / "processing"
    if processing.is_dir():
        for stale in processing.iterdir():
            try:
                if _is_usage_file(stale) and time.time() - stale.stat().st_mtime > STALE_CLAIM_SECONDS:
                    os.rename(stale, folder / stale.name)
            except FileNotFoundError:
                continue
    reports = []
    candidates = sorted(p for p in folder.iterdir() if _is_usage_file(p))
    for path in candidates:
        processing.mkdir(exist_ok=True)
        claimed = processing / path.name
        try:
            os.rename(path, claimed)  # atomic: a concurrent run gets FileNotFoundError
            os.utime(claimed)  # the claim's time (for the stale-claim rule), not the file's
        except (FileNotFoundError, FileExistsError):
            continue
        try:
            report = import_file(session, claimed, fmt, now=now)
            target = _move(claimed, folder / "done")
        except InvalidInput as exc:
            session.rollback()
            report = ImportReport(source=path.name, error=str(exc))
            target = _move(claimed, folder / "failed")
        except Exception:
            session.rollback()
            _move(claimed, folder)  # leave it for the next run
            raise
        report.source = path.name
        Path(str(target) + ".report.json").write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=1),
                                                       encoding="utf-8")
        log.info("usage import: %s", report.summary())
        reports.append(report)
    return reports
