"""ODBC connection strings: parsed for display, scrubbed from every message."""

from __future__ import annotations

import re

_SECRET_KEYS = frozenset({"pwd", "password"})


class ConnectionStringError(ValueError):
    """The text is not a valid ODBC connection string (the message never quotes it)."""


def parse(text: str) -> dict[str, str]:
    """``KEY=value;KEY={braced;value}`` pairs, keys lower-cased; braces may hold ``}}``."""
    pairs: dict[str, str] = {}
    position = 0
    length = len(text)
    while position < length:
        if text[position] in "; \t":
            position += 1
            continue
        equals = text.find("=", position)
        if equals < 0:
            raise ConnectionStringError(f"an attribute without '=' at character {position + 1}")
        key = text[position:equals].strip().lower()
        if not key:
            raise ConnectionStringError(f"an empty attribute name at character {position + 1}")
        value, position = _value(text, equals + 1)
        pairs[key] = value
    if "driver" not in pairs and "dsn" not in pairs:
        raise ConnectionStringError("it names neither a DRIVER nor a DSN")
    return pairs


def _value(text: str, start: int) -> tuple[str, int]:
    """The value beginning at ``start`` and the position after it (past its ';')."""
    while start < len(text) and text[start] in " \t":
        start += 1
    if start < len(text) and text[start] == "{":
        chars: list[str] = []
        position = start + 1
        while position < len(text):
            if text[position] == "}":
                if text.startswith("}}", position):
                    chars.append("}")
                    position += 2
                    continue
                rest = text.find(";", position)
                return "".join(chars), len(text) if rest < 0 else rest + 1
            chars.append(text[position])
            position += 1
        raise ConnectionStringError(f"a '{{' at character {start + 1} is never closed")
    end = text.find(";", start)
    if end < 0:
        return text[start:].strip(), len(text)
    return text[start:end].strip(), end + 1


def server_label(pairs: dict[str, str]) -> str:
    """What to call the source: its SERVER, else its DSN, else its DATABASE, else its DRIVER."""
    for key in ("server", "dsn", "database", "driver"):
        if pairs.get(key):
            return pairs[key]
    return "ODBC source"


def is_sql_server(pairs: dict[str, str]) -> bool:
    """True when the driver is one of SQL Server's (Microsoft's drivers, FreeTDS)."""
    driver = pairs.get("driver", "").lower()
    return "sql server" in driver or "freetds" in driver or "tds" in driver


def secrets(text: str, pairs: dict[str, str]) -> list[str]:
    """The strings that must never appear in a message: the password and the whole string."""
    found = [text] if text else []
    found += [value for key, value in pairs.items() if key in _SECRET_KEYS and value]
    return found


def scrub(message: str, hidden: list[str]) -> str:
    """``message`` with every secret replaced by ``***``."""
    for secret in sorted(hidden, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


_STATE = re.compile(r"^\[(?P<state>[0-9A-Z]{5})\]\s*")
_VENDOR_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s*)+")
_DIAGNOSTIC_TAIL = re.compile(r"(?:\s?\((?:-?\d+|SQL\w+)\))+\s?$")
# Control characters left once whitespace is collapsed, and lone surrogates (which no UTF-8
# file, log line or SQLite text can hold): each becomes U+FFFD, visibly.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# A driver message longer than this is cut: it goes into a detail, a log line, a webhook.
MAX_ERROR_CHARS = 1000
# Text looked at before cutting: whatever a driver says, describing it stays cheap.
_MAX_SCAN_CHARS = 4 * MAX_ERROR_CHARS


def one_line(text: str) -> str:
    """``text`` on one line: whitespace runs (CR, LF, tabs, U+2028, ...) become one space;
    other control characters and lone surrogates become U+FFFD."""
    return _UNSAFE.sub("\ufffd", " ".join(text.split()))


def describe_driver_error(exc: BaseException, hidden: list[str]) -> str:
    """A driver error as ``[SQLSTATE] message``, vendor tags and call names removed: one line
    of at most MAX_ERROR_CHARS characters (a longer one is cut, saying so), secrets scrubbed."""
    if isinstance(exc, UnicodeError):
        return _describe_unicode(exc)
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    text = str(args[1]) if len(args) >= 2 else str(exc)
    state = str(args[0]) if len(args) >= 2 else ""
    return describe_diagnostic(state, text, hidden, empty=type(exc).__name__)


def describe_diagnostic(
    state: str, text: str, hidden: list[str], *, joined: bool = True, empty: str = ""
) -> str:
    """A driver's diagnostic (an error's or a warning's SQLSTATE and text) as ``[SQLSTATE]
    message``; ``empty`` alone when the text says nothing. ``joined``: the text is several
    records joined by "; " (as pyodbc's errors are), each cleaned, repeated ones dropped."""
    # Scrub the raw text first: collapsing or cutting could leave a secret in a shape
    # (or a half) that no longer matches it.
    text = scrub(text, hidden)
    length = len(text)
    parts = []
    line = one_line(text[:_MAX_SCAN_CHARS])
    for piece in line.split("; ") if joined else [line]:
        piece = _STATE.sub("", piece.strip())
        piece = _DIAGNOSTIC_TAIL.sub("", _VENDOR_PREFIX.sub("", piece)).strip()
        if piece and piece not in parts:
            parts.append(piece)
    message = " ".join(parts) or empty
    if not message:
        return ""
    if re.fullmatch(r"[0-9A-Z]{5}", state):
        message = f"[{state}] {message}"
    message = scrub(message, [one_line(secret) for secret in hidden])
    if len(message) > MAX_ERROR_CHARS or length > _MAX_SCAN_CHARS:
        marker = f"… [truncated from {length:,} characters]"
        message = message[: MAX_ERROR_CHARS - len(marker)] + marker
    return message


def _describe_unicode(exc: UnicodeError) -> str:
    """A text that could not cross the driver, named without quoting it (it may be the
    connection string itself)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"the driver sent text that is not valid {exc.encoding} ({exc.reason})"
    if isinstance(exc, UnicodeEncodeError):
        return f"a text cannot be passed to the driver as {exc.encoding} ({exc.reason})"
    return type(exc).__name__
