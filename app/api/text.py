"""Which characters client text may hold, and how input is echoed back in an error."""

from __future__ import annotations

import unicodedata

# Control, format (bidi overrides, zero-width, BOM), line/paragraph separators, surrogates,
# private use, unassigned: invisible or misleading when shown, or refused by a database.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
ECHO_LENGTH = 40


def is_unsafe(char: str) -> bool:
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def first_unsafe(text: str) -> str | None:
    """The first character of `text` that is not allowed, if any."""
    return next((char for char in text if is_unsafe(char)), None)


def code_point(char: str) -> str:
    """U+202E, as a person would look it up."""
    return f"U+{ord(char):04X}"


def echo(text: str) -> str:
    """A short, printable prefix of client input: at most ECHO_LENGTH characters, then '…';
    characters that are not allowed are shown escaped (\\u202e), so they do nothing."""
    shown = ""
    for char in text[: ECHO_LENGTH + 1]:
        piece = char.encode("unicode_escape").decode("ascii") if is_unsafe(char) else char
        if len(shown) + len(piece) > ECHO_LENGTH:
            return shown + "…"
        shown += piece
    return shown
