"""Folder import: files are claimed, imported and moved to done/ or failed/ with a report; a file
dropped again adds nothing; a claim left by a dead run is taken again."""

from __future__ import annotations

import json

from noventiq_panel.services.usage import folder_import

from tests.services.analytics_helpers import DATA, world


def test_import_folder_moves_done_and_failed_files(session, tmp_path):
    world(session)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_bytes((DATA / "azure_mca.csv").read_bytes())
    (inbox / "b.csv").write_text("x,y\n1,2\n", encoding="utf-8")
    (inbox / "notes.txt").write_text("ignored", encoding="utf-8")
    reports = folder_import.import_folder(session, inbox)
    assert [(r.source, r.ok, r.imported) for r in reports] == [("a.csv", True, 4), ("b.csv", False, 0)]
    assert (inbox / "done" / "a.csv").exists() and (inbox / "failed" / "b.csv").exists()
    assert not (inbox / "a.csv").exists() and (inbox / "notes.txt").exists()
    saved = json.loads((inbox / "done" / "a.csv.report.json").read_text(encoding="utf-8"))
    assert saved["imported"] == 4 and saved["totals"] == {"USD": "5.475000"}
    # The same file dropped again is moved to done/ under another name and adds nothing.
    (inbox / "a.csv").write_bytes((DATA / "azure_mca.csv").read_bytes())
    [again] = folder_import.import_folder(session, inbox)
    assert again.imported == 0 and again.duplicates == 4
    assert len(list((inbox / "done").glob("a*.csv"))) == 2


def test_a_file_left_in_processing_by_a_dead_run_is_taken_again(session, tmp_path):
    import os
    import time

    world(session)
    inbox = tmp_path / "inbox"
    (inbox / "processing").mkdir(parents=True)
    fresh = inbox / "processing" / "busy.csv"  # claimed a minute ago by a run still working
    fresh.write_bytes((DATA / "azure_ea_new.csv").read_bytes())
    dead = inbox / "processing" / "dead.csv"
    dead.write_bytes((DATA / "azure_mca.csv").read_bytes())
    old = time.time() - folder_import.STALE_CLAIM_SECONDS - 60
    os.utime(dead, (old, old))
    reports = folder_import.import_folder(session, inbox)
    assert [(r.source, r.imported) for r in reports] == [("dead.csv", 4)]
    assert (inbox / "done" / "dead.csv").exists() and fresh.exists()
