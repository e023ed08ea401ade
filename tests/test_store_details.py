"""Details: non-empty, never refused for length, read back in chronological order."""

from __future__ import annotations

import pytest

from service.store import (
    MAX_MESSAGE_LENGTH,
    Database,
    InvalidMessage,
    NotFound,
    add_detail,
    create_job_log,
    job_log_with_details,
)
from tests.support.clock import FakeClock


async def test_details_come_back_in_order_with_their_times(db: Database, clock: FakeClock) -> None:
    log = await create_job_log(db)
    written = []
    for message in ("Job started - SyncOpenOrdersJob", "Connected successfully", "Done"):
        written.append(await add_detail(db, log.id, message))
        clock.advance(0.4)
    read = await job_log_with_details(db, log.id)
    assert [d.message for d in read.details] == [
        "Job started - SyncOpenOrdersJob",
        "Connected successfully",
        "Done",
    ]
    assert read.details == written
    assert [d.created_at for d in read.details] == sorted(d.created_at for d in read.details)
    assert (await job_log_with_details(db, log.name)).details == written


async def test_details_of_a_log_stay_with_it(db: Database, clock: FakeClock) -> None:
    first, second = await create_job_log(db), await create_job_log(db)
    await add_detail(db, first.id, "one")
    await add_detail(db, second.id, "two")
    await add_detail(db, first.id, "three")
    assert [d.message for d in (await job_log_with_details(db, first.id)).details] == [
        "one",
        "three",
    ]
    assert [d.message for d in (await job_log_with_details(db, second.id)).details] == ["two"]


async def test_a_long_message_is_cut_with_a_marker(db: Database) -> None:
    log = await create_job_log(db)
    message = "".join(f"row {n}; " for n in range(3000))[:17_345]
    assert len(message) == 17_345
    detail = await add_detail(db, log.id, message)
    marker = "… [truncated from 17,345 characters]"
    assert len(detail.message) == MAX_MESSAGE_LENGTH
    assert detail.message.endswith(marker)
    assert message.startswith(detail.message.removesuffix(marker))
    assert (await job_log_with_details(db, log.id)).details[0].message == detail.message


@pytest.mark.parametrize("length", [1, MAX_MESSAGE_LENGTH - 1, MAX_MESSAGE_LENGTH])
async def test_messages_up_to_the_limit_are_kept_whole(db: Database, length: int) -> None:
    log = await create_job_log(db)
    message = ("ß🙂x" * length)[:length]
    assert (await add_detail(db, log.id, message)).message == message


async def test_one_character_over_the_limit_is_cut(db: Database) -> None:
    log = await create_job_log(db)
    detail = await add_detail(db, log.id, "y" * (MAX_MESSAGE_LENGTH + 1))
    assert len(detail.message) == MAX_MESSAGE_LENGTH
    assert detail.message.endswith("… [truncated from 5,001 characters]")


@pytest.mark.parametrize("message", ["", " ", "\n\t "])
async def test_empty_messages_are_refused(db: Database, message: str) -> None:
    log = await create_job_log(db)
    with pytest.raises(InvalidMessage, match="must not be empty"):
        await add_detail(db, log.id, message)
    assert (await job_log_with_details(db, log.id)).details == []


async def test_hostile_text_is_stored_exactly(db: Database) -> None:
    log = await create_job_log(db)
    message = "line 1\nline 2\r\n<script>alert('x')</script> \"quoted\" \x00 NUL 𝄞 😀"
    await add_detail(db, log.id, message)
    assert (await job_log_with_details(db, log.id)).details[0].message == message


async def test_text_utf8_cannot_carry_is_replaced_not_refused(db: Database) -> None:
    log = await create_job_log(db)
    detail = await add_detail(db, log.id, "bad byte \udcff here")
    assert detail.message == "bad byte \ufffd here"


async def test_detail_for_an_unknown_log(db: Database) -> None:
    with pytest.raises(NotFound):
        await add_detail(db, 999, "orphan")
