"""The purge's archive: gzip-compressed JSON Lines, one file per month of the logs' created_at.

One line per log, as the API shows it plus ``"details": [...]`` in order. Each purge batch
appends one gzip member per month file; ``gzip.open`` and ``zcat`` read a file as one stream. A
member is written, closed and fsynced before the batch is deleted; a failed batch cuts each file
back to its size before it, so no half member stays behind. A crash between archiving and
deleting a batch archives it again at the next purge, so a reader de-duplicates by the log's
``id``, keeping the first line.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from service.store import DetailMark, JobLogStore, Purgeable

logger = logging.getLogger(__name__)

# Details read from the database at a time while a log's line is written.
DETAIL_PAGE = 1000
# Archive text gathered in memory before it goes to the files.
_FLUSH_CHARS = 1 << 20

_T = TypeVar("_T")


class ArchiveFailed(Exception):
    """An archive file (or its folder) could not be written."""

    def __init__(self, path: Path, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(f"cannot write the archive {path}: {reason}")
        self.path = path


@dataclass(frozen=True)
class Archived:
    """What one batch put in the archive: each log's detail mark, and how many logs per file."""

    marks: dict[int, DetailMark]
    files: dict[Path, int]


async def archive_batch(store: JobLogStore, folder: Path, batch: Sequence[Purgeable]) -> Archived:
    """Append each log of the batch to its month's file in ``folder``, fsynced.

    Raises ArchiveFailed when a file cannot be written; the files are then cut back to their
    size before the batch.
    """
    files = MonthFiles()
    marks: dict[int, DetailMark] = {}
    try:
        for item in batch:
            marks[item.log.id] = await _archive_log(store, files, _month_file(folder, item), item)
        await blocking(files.commit)
    except BaseException:
        await blocking(files.discard)
        raise
    written: dict[Path, int] = {}
    for item in batch:
        path = _month_file(folder, item)
        written[path] = written.get(path, 0) + 1
    return Archived(marks, written)


async def _archive_log(
    store: JobLogStore, files: MonthFiles, path: Path, item: Purgeable
) -> DetailMark:
    """One JSON line: the log as the API shows it, its details streamed in a page at a time."""
    head = item.log.model_dump_json()
    files.add(path, head[:-1] + ',"details":[')
    count, last = 0, 0
    async for page in store.iter_details(item.log.id, page=DETAIL_PAGE):
        lines = ",".join(detail.model_dump_json() for detail in page)
        files.add(path, f",{lines}" if count else lines)
        count, last = count + len(page), page[-1].id
        if files.buffered >= _FLUSH_CHARS:
            await blocking(files.flush)
    files.add(path, "]}\n")
    return count, last


def _month_file(folder: Path, item: Purgeable) -> Path:
    return archive_path(folder, item.log.created_at.strftime("%Y-%m"))


def archive_path(folder: Path, month: str) -> Path:
    """The archive file of a month (``2025-12``): ``folder/job_logs-2025-12.jsonl.gz``."""
    return folder / f"job_logs-{month}.jsonl.gz"


@dataclass
class _Member:
    raw: BinaryIO
    gzip: gzip.GzipFile
    start: int


class MonthFiles:
    """The gzip members one batch appends, one per month file.

    Text is gathered with :meth:`add` (in the event loop); :meth:`flush`, :meth:`commit` and
    :meth:`discard` do the file I/O (in a thread). Commit closes each member and fsyncs it;
    discard cuts each file back to its size before the batch, so no half member stays behind.
    """

    def __init__(self) -> None:
        self._pending: dict[Path, list[str]] = {}
        self._open: dict[Path, _Member] = {}
        self._changed_folders: set[Path] = set()
        self.buffered = 0

    def add(self, path: Path, text: str) -> None:
        """Queue ``text`` for ``path``."""
        self._pending.setdefault(path, []).append(text)
        self.buffered += len(text)

    def flush(self) -> None:
        """Compress and write the queued text."""
        for path, pieces in self._pending.items():
            member = self._open.get(path) or self._start(path)
            try:
                member.gzip.write("".join(pieces).encode())
            except OSError as exc:
                raise ArchiveFailed(path, exc) from exc
        self._pending.clear()
        self.buffered = 0

    def commit(self) -> None:
        """Write the rest, end each member, and make it durable (file, then new folder entries)."""
        self.flush()
        for path, member in list(self._open.items()):
            try:
                member.gzip.close()
                os.fsync(member.raw.fileno())
                member.raw.close()
            except OSError as exc:
                raise ArchiveFailed(path, exc) from exc
            del self._open[path]
        for folder in self._changed_folders:
            try:
                _fsync_folder(folder)
            except OSError as exc:
                raise ArchiveFailed(folder, exc) from exc

    def discard(self) -> None:
        """Undo what was written to files not yet committed."""
        for path, member in self._open.items():
            with contextlib.suppress(OSError):
                member.gzip.close()
            try:
                os.ftruncate(member.raw.fileno(), member.start)
            except OSError as exc:
                logger.error("cannot cut %s back after a failed purge: %s", path, exc)
            with contextlib.suppress(OSError):
                member.raw.close()
        self._open.clear()
        self._pending.clear()

    def _start(self, path: Path) -> _Member:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveFailed(path.parent, exc) from exc
        try:
            if not path.exists():
                self._changed_folders.add(path.parent)
            raw = path.open("ab", buffering=0)
        except OSError as exc:
            raise ArchiveFailed(path, exc) from exc
        start = os.fstat(raw.fileno()).st_size
        member = self._open[path] = _Member(raw, gzip.GzipFile(fileobj=raw, mode="ab"), start)
        return member


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def blocking(call: Callable[[], _T]) -> _T:
    """Run ``call`` in a thread; a cancel waits for it to end before propagating, so the
    archive files are never touched by two threads at once."""
    future = asyncio.ensure_future(asyncio.to_thread(call))
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        future.exception()  # retrieved: the cancel is what propagates
        raise asyncio.CancelledError
    return future.result()
