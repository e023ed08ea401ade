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
_DIAGNOSTIC_TAIL = re.compile(r"(?:\s*\((?:-?\d+|SQL\w+)\))+\s*$")


def describe_driver_error(exc: BaseException, hidden: list[str]) -> str:
    """A driver error as ``[SQLSTATE] message``, vendor tags and call names removed, scrubbed."""
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    text = str(args[1]) if len(args) >= 2 else str(exc)
    state = str(args[0]) if len(args) >= 2 else ""
    parts = []
    for piece in text.split("; "):
        piece = _STATE.sub("", piece.strip())
        piece = _DIAGNOSTIC_TAIL.sub("", _VENDOR_PREFIX.sub("", piece)).strip()
        if piece and piece not in parts:
            parts.append(piece)
    message = " ".join(parts) or type(exc).__name__
    if re.fullmatch(r"[0-9A-Z]{5}", state):
        message = f"[{state}] {message}"
    return scrub(" ".join(message.split()), hidden)
