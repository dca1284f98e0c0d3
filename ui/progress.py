"""Progress for long work (index build, ingestion, probe): a rich spinner or bar on stderr when it is a
terminal; silent when piped or with --json, so stdout stays clean Markdown or JSON."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Callable, TypeVar

T = TypeVar("T")


def _interactive(enabled: bool) -> bool:
    return enabled and sys.stderr.isatty()


@contextmanager
def status(message: str, *, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner showing `message`; yields a function that replaces the message with the current stage."""
    if not _interactive(enabled):
        yield lambda _msg: None
        return
    from rich.console import Console

    with Console(stderr=True).status(message) as spinner:
        yield lambda msg: spinner.update(msg)


def track(items: Iterable[T], description: str, *, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """A progress bar over items (files to ingest, ...)."""
    if not _interactive(enabled):
        yield from items
        return
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, console=None, transient=True)
