"""Text a person reads, made safe: names (model, workload, stage and node names become test
ids, file names, HTML and Markdown, so they are limited to a small set of characters), values cut
to a readable length, plugin or file text shown literally on a terminal and in Markdown."""

from __future__ import annotations

import html
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}|#!~])")

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def is_safe_name(value: object) -> bool:
    """True if ``value`` may be used as a model, workload, stage or node name."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def shorten(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters so that a huge value is never echoed whole."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def name_error(kind: str, value: object) -> str:
    """The sentence that rejects ``value`` as a ``kind`` name."""
    return (
        f"{kind} name {shorten(value)} is not allowed: use 1 to 128 letters, digits, '_', '.' and '-', "
        "starting with a letter, digit or '_'"
    )


def printable(text: str) -> str:
    """``text`` safe for a terminal line: control characters (escape sequences, carriage returns,
    newlines) shown as ``\\x1b``-style escapes instead of acting on the terminal."""
    return _CONTROL.sub(lambda m: "\\x" + format(ord(m.group()), "02x"), text)


def md(text: object) -> str:
    """``text`` as literal Markdown on one line: special characters escaped, markup characters
    as entities (so no tag survives), newlines joined."""
    flat = html.escape(" ".join(str(text).split()), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", flat)


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
