"""The ``text/event-stream`` format (WHATWG HTML §9.2): every byte an event stream sends.

Data is one line of JSON, so no text can start a field of its own; an event's id is its
detail's id. A change is encoded once and the bytes kept on the event (``Event.encoded``) for
every subscriber; a stream written straight to its transport gets them as one HTTP/1.1 chunk.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.events import Batch, Event
from service.wire import JobLog

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
PING = b": ping\n\n"
PING_CHUNK = b"%x\r\n%s\r\n" % (len(PING), PING)


def retry(milliseconds: int) -> bytes:
    """How long a browser waits before it reconnects."""
    return f"retry: {milliseconds}\n\n".encode()


def frame(event: Event) -> bytes:
    """``id:``/``event:``/``data:`` lines of an event, encoded once for all subscribers."""
    encoded = event.encoded.get("frame")
    if encoded is None:
        encoded = event.encoded["frame"] = _encode(event)
    return encoded


def chunk(event: Event) -> bytes:
    """The frame as one HTTP/1.1 chunk, for a stream written straight to its transport."""
    encoded = event.encoded.get("chunk")
    if encoded is None:
        data = frame(event)
        encoded = event.encoded["chunk"] = b"%x\r\n%s\r\n" % (len(data), data)
    return encoded


def frames(events: Iterable[Event]) -> bytes:
    """Several events as one write."""
    return b"".join(frame(event) for event in events)


def batch_frames(batch: Batch) -> bytes:
    """A batch's frames joined, once for every subscriber it is offered to."""
    encoded = batch.encoded.get("frames")
    if encoded is None:
        encoded = batch.encoded["frames"] = frames(batch.events)
    return encoded


def batch_chunk(batch: Batch) -> bytes:
    """A batch's frames as one HTTP/1.1 chunk."""
    encoded = batch.encoded.get("chunk")
    if encoded is None:
        data = batch_frames(batch)
        encoded = batch.encoded["chunk"] = b"%x\r\n%s\r\n" % (len(data), data)
    return encoded


def end(log: JobLog) -> bytes:
    """``event: end`` with the followed log, after its last line: the stream then closes."""
    return f"event: end\ndata: {log.model_dump_json()}\n\n".encode()


def _encode(event: Event) -> bytes:
    if event.detail is not None:
        data = event.detail.model_dump_json()
        return f"id: {event.detail.id}\nevent: detail\ndata: {data}\n\n".encode()
    assert event.job_log is not None
    return f"event: job_log\ndata: {event.job_log.model_dump_json()}\n\n".encode()
