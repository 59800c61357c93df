"""Log masking: ids masked, content dropped."""

from __future__ import annotations

from typing import Any

import pytest

from wawindow.logs import mask_id, mask_key, redact


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("16505551234", "16*******34"),
        ("US.13491208655302741918", "US.13****************18"),
        ("1234", "****"),
    ],
)
def test_ids_are_masked(raw: str, masked: str) -> None:
    assert mask_id(raw) == masked


def test_conversation_keys_keep_the_business_number() -> None:
    assert mask_key("106540352242922:16505551234") == "106540352242922:16*******34"


def test_redact_masks_ids_and_drops_content() -> None:
    event: dict[str, Any] = {
        "event": "x",
        "wa_id": "16505551234",
        "text": "my secret",
        "status": 200,
    }

    out = redact(None, "info", event)

    assert out == {"event": "x", "wa_id": "16*******34", "text": "<dropped>", "status": 200}


def test_library_log_lines_are_json_through_the_same_processors() -> None:
    import io
    import logging

    import orjson
    import structlog

    from wawindow import logs
    from wawindow.logs import configure

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, write_through=True)
    root = logging.getLogger()
    saved, level, structlog_config = list(root.handlers), root.level, structlog.get_config()
    hot = logs.hot_line()
    buffer = configure("info", "json", stream)
    assert buffer is not None
    structlog.contextvars.bind_contextvars(role="worker", version="9.9")
    try:
        logging.getLogger("aiokafka.consumer").warning("lost %s", "partition", extra={})
        logging.getLogger("aiokafka").info("chatty")  # below the libraries' level
        logging.getLogger("aiohttp.server").error("boom")
        buffer.drain()
    finally:
        buffer.close()
        structlog.contextvars.clear_contextvars()
        root.handlers = saved
        root.setLevel(level)
        structlog.configure(**structlog_config)  # later tests log where they did before
        logs._HOT[0] = hot

    lines = [orjson.loads(line) for line in raw.getvalue().splitlines()]
    assert [(x["logger"], x["level"], x["event"]) for x in lines] == [
        ("aiokafka.consumer", "warning", "lost partition"),
        ("aiohttp.server", "error", "boom"),
    ]
    assert {(x["role"], x["version"]) for x in lines} == {("worker", "9.9")}


async def test_buffered_lines_are_written_out_in_quiet_times_when_large_and_at_close() -> None:
    import io

    from tests.waiting import until
    from wawindow.logs import FLUSH_BYTES, LineBuffer

    quiet = io.BytesIO()
    ticking = LineBuffer(quiet, interval_s=0.05)
    ticking.write(b'{"event":"one"}\n')
    ticking.flush()  # a line's own flush leaves the writing to the buffer

    async def written() -> bool:
        return quiet.getvalue() == b'{"event":"one"}\n'

    await until(written, "the quiet-time write-out", 5)
    ticking.close()

    raw = io.BytesIO()
    hourly = LineBuffer(raw, interval_s=3600)
    hourly.write(b"x" * 100 + b"\n")
    assert raw.getvalue() == b""  # an hour is not up, and 101 bytes are below the bound
    hourly.write(b"y" * FLUSH_BYTES + b"\n")
    assert raw.getvalue() == b"x" * 100 + b"\n" + b"y" * FLUSH_BYTES + b"\n"
    hourly.write("the last line\n")
    hourly.close()
    assert raw.getvalue().endswith(b"\nthe last line\n")


@pytest.mark.parametrize("level", ["info", "warning"])
def test_the_hot_line_is_the_line_structlog_writes(level: str) -> None:
    import io
    import logging
    import re

    import orjson
    import structlog

    from wawindow import logs

    raw = io.BytesIO()
    root = logging.getLogger()
    saved, root_level, structlog_config = list(root.handlers), root.level, structlog.get_config()
    hot = logs.hot_line()
    stream = io.TextIOWrapper(raw, write_through=True)  # kept: collecting it closes raw
    buffer = logs.configure(level, "json", stream)
    assert buffer is not None
    structlog.contextvars.bind_contextvars(role="webhook")
    fields: dict[str, Any] = {"path": "/webhook", "status": 200, "kinds": {"status": 2}}
    try:
        structlog.get_logger("wawindow.ingest").info("webhook.post", **fields, wa_id="16505551234")
        logs.hot_line().info("webhook.post", **fields, wa_id="16505551234")
        buffer.drain()
    finally:
        buffer.close()
        structlog.contextvars.clear_contextvars()
        root.handlers = saved
        root.setLevel(root_level)
        structlog.configure(**structlog_config)
        logs._HOT[0] = hot

    lines = [orjson.loads(line) for line in raw.getvalue().splitlines()]
    if level == "warning":
        assert lines == []
        return
    slow, hot = lines
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
    assert stamp.match(slow.pop("timestamp"))
    assert stamp.match(hot.pop("timestamp"))
    assert hot == slow
    assert hot["wa_id"] == "16*******34"


@pytest.mark.parametrize("to_file", [False, True])
def test_lines_for_people_are_for_reading_and_keep_the_libraries_out(
    tmp_path: Any, to_file: bool
) -> None:
    """A command a person runs renders its lines for reading even into a pipe, and the
    libraries' lines never come between them: into a file of their own, or nowhere (not even
    Python's last resort, which writes warnings to stderr)."""
    import contextlib
    import io
    import logging

    import orjson
    import structlog

    from wawindow import logs

    stream = io.StringIO()  # not a terminal
    library_log = tmp_path / "clients.log" if to_file else None
    root = logging.getLogger()
    saved, level, structlog_config = list(root.handlers), root.level, structlog.get_config()
    hot = logs.hot_line()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            assert logs.configure("warning", "auto", stream, for_people=True,
                                  library_log=library_log) is None  # fmt: skip
            structlog.get_logger("wawindow").warning("worker.slow", wa_id="16505551234")
            logging.getLogger("aiokafka").error("Unable connect to %s", "127.0.0.1:9092")
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers = saved
        root.setLevel(level)
        structlog.configure(**structlog_config)
        logs._HOT[0] = hot

    [line] = stream.getvalue().splitlines()
    assert "worker.slow" in line
    assert "16*******34" in line
    assert not line.startswith("{")
    assert "\x1b[" not in line  # no colours outside a terminal
    assert stderr.getvalue() == ""
    if library_log is not None:
        [library] = [orjson.loads(x) for x in library_log.read_text().splitlines()]
        assert library["logger"] == "aiokafka"
        assert library["event"] == "Unable connect to 127.0.0.1:9092"


def test_the_libraries_are_quiet_while_a_process_starts() -> None:
    import logging

    from wawindow.logs import libraries_quiet

    root = logging.getLogger()
    before = root.level
    with libraries_quiet():
        assert not logging.getLogger("aiokafka").isEnabledFor(logging.CRITICAL)
    assert root.level == before
