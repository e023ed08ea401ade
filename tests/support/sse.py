"""A Server-Sent Events client for tests, parsing a stream as the WHATWG HTML standard says.

Lines end at CR, LF or CRLF (also when a CRLF is split between two reads); a line starting
with ``:`` is a comment; ``field: value`` lines set ``event``, ``data``, ``id`` or ``retry``;
a blank line dispatches the event, if it has data. An incomplete event at the end of the stream
is discarded. Unlike a browser, the parser also reports each event's own ``id`` field (``None``
when the block had none), so a test can tell "no id line" from "the id carried over", and it
keeps the comments it read, so a test can see keep-alive pings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import ClientResponse

_LINE_END = re.compile(rb"\r\n|\r|\n")


class ByteStream(Protocol):
    """Where the bytes come from: ``ClientResponse.content`` or anything reading like it."""

    async def readany(self) -> bytes:
        """The next bytes available, ``b""`` at the end of the stream."""
        ...


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event."""

    type: str
    """The ``event`` field, ``"message"`` when the block had none."""
    data: str
    """The ``data`` lines joined by LF (without the final LF)."""
    id: str | None
    """This block's own ``id`` field, ``None`` when it had none."""
    last_event_id: str
    """The stream's last event id after this event (what a browser would resume with)."""

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


@dataclass(frozen=True)
class SSEComment:
    """A comment line (``:`` and what follows it, without the colon)."""

    text: str

    @property
    def is_ping(self) -> bool:
        """True for the keep-alive comment ``: ping``."""
        return self.text.strip() == "ping"


SSEItem = SSEEvent | SSEComment


@dataclass
class SSEDecoder:
    """Turns bytes into events and comments, keeping the stream's state between feeds."""

    retry: int | None = None
    """The reconnection time the stream set (``retry:``), in milliseconds."""
    last_event_id: str = ""
    lines_read: int = 0
    _pending: bytes = b""
    _after_cr: bool = False
    _started: bool = False
    _event_type: str = ""
    _data: list[str] = field(default_factory=list)
    _block_id: str | None = None

    def split_lines(self, chunk: bytes) -> list[str]:
        """The complete lines ``chunk`` ends (decoded, without their terminators)."""
        data = self._pending + chunk
        if self._after_cr and data:
            self._after_cr = False
            if data.startswith(b"\n"):
                data = data[1:]
        lines: list[str] = []
        start = 0
        for match in _LINE_END.finditer(data):
            raw = data[start : match.start()]
            if match.group() == b"\r" and match.end() == len(data):
                self._after_cr = True  # an LF in the next chunk belongs to this line end
            lines.append(self._decode(raw))
            start = match.end()
        self._pending = data[start:]
        self.lines_read += len(lines)
        return lines

    def _decode(self, raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace")
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        return text

    def feed(self, chunk: bytes) -> list[SSEItem]:
        """Parse ``chunk``; the events it completes and the comments it holds, in order."""
        items: list[SSEItem] = []
        for line in self.split_lines(chunk):
            item = self.process_line(line)
            if item is not None:
                items.append(item)
        return items

    def process_line(self, line: str) -> SSEItem | None:
        """Apply one line; the event it dispatches or the comment it is, else None."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return SSEComment(line[1:])
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._block_id = value
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event_type, block_id = self._data, self._event_type, self._block_id
        self._data, self._event_type, self._block_id = [], "", None
        if not data:
            return None
        return SSEEvent(
            type=event_type or "message",
            data="\n".join(data),
            id=block_id,
            last_event_id=self.last_event_id,
        )


class SSEReader:
    """Reads a live event stream item by item; ``None`` marks its end."""

    def __init__(self, source: ClientResponse | ByteStream) -> None:
        self._content: ByteStream = source.content if isinstance(source, ClientResponse) else source
        self.decoder = SSEDecoder()
        self.comments: list[SSEComment] = []
        self.eof = False
        self._lines: list[str] = []

    @property
    def retry(self) -> int | None:
        """The reconnection time the stream set, in milliseconds."""
        return self.decoder.retry

    @property
    def last_event_id(self) -> str:
        """The id a browser would send as ``Last-Event-ID`` now."""
        return self.decoder.last_event_id

    async def read_line(self) -> str | None:
        """The next raw line, ``None`` at the end of the stream (a partial line is dropped)."""
        while not self._lines:
            if self.eof:
                return None
            chunk = await self._content.readany()
            if not chunk:
                self.eof = True
                return None
            self._lines.extend(self.decoder.split_lines(chunk))
        return self._lines.pop(0)

    async def next_item(self) -> SSEItem | None:
        """The next event or comment, ``None`` at the end of the stream."""
        while True:
            line = await self.read_line()
            if line is None:
                return None
            item = self.decoder.process_line(line)
            if isinstance(item, SSEComment):
                self.comments.append(item)
            if item is not None:
                return item

    async def next_event(self) -> SSEEvent | None:
        """The next event (comments are skipped, and kept), ``None`` at the end."""
        while True:
            item = await self.next_item()
            if item is None or isinstance(item, SSEEvent):
                return item

    async def read_until(self, predicate: Callable[[SSEItem], bool]) -> list[SSEEvent]:
        """Events up to and including the first item ``predicate`` accepts, or up to the end.

        The caller's timeout bounds the wait; check :attr:`eof` to tell the two ends apart.
        """
        events: list[SSEEvent] = []
        while True:
            item = await self.next_item()
            if item is None:
                return events
            if isinstance(item, SSEEvent):
                events.append(item)
            if predicate(item):
                return events

    async def read_to_ping(self) -> list[SSEEvent]:
        """Events until the next keep-alive comment (the stream went idle) or the end."""
        return await self.read_until(lambda item: isinstance(item, SSEComment) and item.is_ping)

    async def read_to_end(self) -> list[SSEEvent]:
        """Every event until the server ends the stream."""
        return await self.read_until(lambda item: False)


def parse(raw: bytes) -> tuple[list[SSEEvent], SSEDecoder]:
    """The events in a complete byte string, and the decoder's state after them."""
    decoder = SSEDecoder()
    events = [item for item in decoder.feed(raw) if isinstance(item, SSEEvent)]
    return events, decoder
