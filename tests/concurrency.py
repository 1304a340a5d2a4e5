"""Run callables at the same moment from threads (the "two requests at once" cases)."""

from __future__ import annotations

import threading
from typing import Callable


def at_once(*calls: Callable[[], object]) -> list[object]:
    """Start every call on its own thread behind one barrier, wait for all, and return their
    results in order; the first exception raised by any of them is raised here."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
