"""The tests' own Server-Sent Events parser (tests/support/sse.py) against the WHATWG rules:
the event-stream tests are only as good as it is."""

from __future__ import annotations

from tests.support.event_streams import is_type
from tests.support.sse import SSEComment, SSEEvent, SSEReader


class Chunks:
    """A byte stream that hands out prepared chunks, then ``b""``."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def readany(self) -> bytes:
        """The next chunk."""
        return self.chunks.pop(0) if self.chunks else b""


async def test_parser_follows_the_whatwg_rules() -> None:
    reader = SSEReader(
        Chunks(
            b"\xef\xbb\xbfretry: 1500\n\n: hello\r",
            b'\nid: 7\revent: detail\r\ndata: {"a":\r',
            b"\ndata:  two\n\n",
            b"data\nid\n\nid: bad\x00id\ndata: x\n\nevent: lonely\n\nretry: 1x\n",
            b"data: half",
        )
    )
    first = await reader.next_item()
    assert first == SSEComment(" hello")
    assert reader.retry == 1500
    event = await reader.next_event()
    assert event == SSEEvent(type="detail", data='{"a":\n two', id="7", last_event_id="7")
    empty = await reader.next_event()
    assert empty == SSEEvent(type="message", data="", id="", last_event_id="")
    nul = await reader.next_event()
    assert nul == SSEEvent(type="message", data="x", id="bad\x00id", last_event_id="")
    assert await reader.next_event() is None  # "lonely" has no data; "half" never ended
    assert reader.eof
    assert reader.retry == 1500


async def test_parser_reads_until_a_predicate_or_the_end() -> None:
    raw = b"data: 1\n\n: ping\n\nevent: end\ndata: 2\n\ndata: 3\n\n"
    reader = SSEReader(Chunks(raw[:5], raw[5:17], raw[17:]))
    assert [e.data for e in await reader.read_to_ping()] == ["1"]
    assert [e.data for e in await reader.read_until(is_type("end"))] == ["2"]
    assert [e.data for e in await reader.read_to_end()] == ["3"]
    assert reader.eof
    assert [c.is_ping for c in reader.comments] == [True]
