"""Cells of every CSV and XLSX file the panel writes, neutralised against formula injection.

A spreadsheet program runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return as a formula (``=HYPERLINK(...)``, ``@SUM(...)``, DDE tricks) — and customer text reaches
the exports (subscription and resource names, descriptions, resource groups from usage files).
Such text is written with a leading apostrophe, which spreadsheets show as plain text. Numbers,
also as text (``-1500.50``), stay as they are. One function decides it: :func:`safe_cell`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?([eE][-+]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value`` as it may go into a cell: text that a spreadsheet would run is quoted."""
    if isinstance(value, str) and value[:1] in _DANGEROUS and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_row(values: Iterable[Any]) -> list[Any]:
    return [safe_cell(v) for v in values]


class SafeWriter:
    """``csv.writer`` whose rows are neutralised (:func:`safe_row`)."""

    def __init__(self, stream, **kwargs) -> None:
        self._writer = csv.writer(stream, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow(safe_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(stream, **kwargs) -> SafeWriter:
    return SafeWriter(stream, **kwargs)
