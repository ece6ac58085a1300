"""No secret reaches a log line, whichever way it is logged."""

from __future__ import annotations

import io
import json
import logging

import pytest

from projctld import logging as logs
from projctld import redact

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
GITLAB = "glpat-" + "x" * 20


@pytest.fixture
def captured():
    stream = io.StringIO()
    logs.configure("debug", "json", stream)
    yield stream
    logs.configure("info", "json")


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_secret_keys_and_secret_shaped_text_are_redacted(captured) -> None:
    log = logs.get_logger("test")
    log.info("by_key", token=TOKEN, password="hunter22",
             headers={"Authorization": f"Bearer {TOKEN}"})
    log.info(f"message with Bearer {TOKEN} inside")
    log.info("nested", request={"url": "https://x", "params": [f"token={TOKEN}"]})
    log.info("gitlab", detail=f"PRIVATE-TOKEN: {GITLAB}")
    log.info("plain", note=f"pasted {TOKEN} by mistake")
    output = captured.getvalue()
    assert TOKEN not in output and GITLAB not in output and "hunter22" not in output
    first, second, third, fourth, fifth = lines(captured)
    assert first["token"] == first["password"] == first["headers"]["Authorization"] == "[redacted]"
    assert second["event"] == "message with Bearer [redacted] inside"
    assert third["request"] == {"url": "https://x", "params": ["token=[redacted]"]}
    assert "[redacted]" in fourth["detail"] and "[redacted]" in fifth["note"]


def test_tracebacks_are_redacted_too(captured) -> None:
    try:
        raise RuntimeError(f"upstream refused Authorization: Bearer {TOKEN}")
    except RuntimeError:
        logs.get_logger("test").exception("failed")
    (line,) = lines(captured)
    assert "RuntimeError: upstream refused" in line["exception"]
    assert TOKEN not in captured.getvalue()


def test_stdlib_loggers_of_libraries_are_redacted(captured) -> None:
    logging.getLogger("httpx").warning("GET https://api.github.com token %s", TOKEN)
    assert "GET https://api.github.com token [redacted]" in captured.getvalue()
    assert TOKEN not in captured.getvalue()


def test_stdlib_loggers_write_the_same_json_lines(captured) -> None:
    # APScheduler's own warnings once came out as plain text between the JSON lines.
    logging.getLogger("apscheduler.scheduler").warning(
        "Run time of job %r was missed by %s", "poll web/github", "0:00:03")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("apscheduler.executors").exception("Job raised")
    missed, raised = lines(captured)
    assert missed["event"] == "Run time of job 'poll web/github' was missed by 0:00:03"
    assert (missed["level"], missed["logger"]) == ("warning", "apscheduler.scheduler")
    assert "timestamp" in missed
    assert raised["level"] == "error" and "ValueError: boom" in raised["exception"]


def test_ordinary_values_are_left_alone(captured) -> None:
    logs.get_logger("test").info("serving", socket="/run/user/1/projctl/projctld.sock", pid=7,
                                 token_count=None)
    (line,) = lines(captured)
    assert line["socket"] == "/run/user/1/projctl/projctld.sock"
    assert line["pid"] == 7 and line["token_count"] is None


def test_header_echoes_and_remembered_tokens_are_redacted(captured) -> None:
    plain = "opaque-credential-4242"  # no known token shape: only the header or memory tells
    log = logs.get_logger("test")
    log.info(f"proxy said: Authorization: Bearer {plain}")
    log.info(f"proxy said: Proxy-Authorization: Basic {plain}==; PRIVATE-TOKEN: {plain}")
    assert plain not in captured.getvalue()
    assert "Authorization: Bearer [redacted]" in captured.getvalue()
    log.info(f"quoted bare: '{plain}'")
    assert plain in captured.getvalue()  # nothing says it is a secret, yet
    redact.remember(plain)  # as TokenSource.get does with every token it hands out
    assert redact.redact_text(f"quoted bare: '{plain}'") == "quoted bare: '[redacted]'"
    assert redact.redact_text("a 404 Not Found, Authorization required") == \
        "a 404 Not Found, Authorization required"
