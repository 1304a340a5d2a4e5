"""Paging of the lists the page states show: how many pages, which page a browser may ask for,
and one page read from a service (the last one when the asked page ran past the end)."""

from __future__ import annotations

import math
from typing import Any, Callable, TypeVar

Row = TypeVar("Row")


def page_count(total: int, size: int) -> int:
    return max(1, math.ceil(max(0, int(total)) / max(1, int(size))))


def clamp_page(page: Any, total: int, size: int) -> int:
    """A 1-based page number from browser input, within [1, pages]."""
    try:
        number = int(str(page))
    except (TypeError, ValueError):
        number = 1
    return min(max(1, number), page_count(total, size))


def fetch_page(load: Callable[[int, int], tuple[list[Row], int]], page: int,
               size: int) -> tuple[list[Row], int, int]:
    """``load(offset, limit) -> (rows, total)`` for the 1-based ``page``; when the page is past the
    end (the list shrank, a filter changed) the last page instead. Returns (rows, total, page)."""
    rows, total = load((page - 1) * size, size)
    if not rows and total and page > 1:
        page = page_count(total, size)
        rows, total = load((page - 1) * size, size)
    return rows, int(total), page
