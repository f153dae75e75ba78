"""A schedule typed in by the user: a list of sigmas as text.

Only float() ever sees the text, one token at a time; nothing is evaluated.
"""
import math

import numpy as np

_WHERE = "custom sigmas"


# Brackets of a pasted Python/JSON list or tuple, and the semicolons some
# tools separate with, count as separators (the newest core's ManualSigmas
# takes any text and keeps its numbers; we keep its forms but name a token
# that is not a number instead of dropping it).
_SEPARATORS = str.maketrans({c: " " for c in "[](){};"})


def _tokens(text):
    body = text.strip().translate(_SEPARATORS)
    pieces = body.split(",")
    # One trailing comma is how lists are often written; it is not an item.
    if len(pieces) > 1 and not pieces[-1].strip():
        pieces.pop()
    tokens = []
    for piece in pieces:
        # Newlines or spaces separate items as well as commas do.
        words = piece.split()
        if not words:
            raise ValueError(f"{_WHERE}: item {len(tokens) + 1} is empty "
                             f"(two commas in a row?)")
        tokens.extend(words)
    return tokens


def parse_sigmas(text):
    """Sigmas from text such as "14.6, 7.0, 3.1, 0" -> list of floats ending in 0.

    Items are separated by commas, spaces, newlines or semicolons; the list
    may sit in [ ] or ( ) (the text forms of the core's ManualSigmas node:
    "1, 0.5, 0", "[1.0, 0.75, 0.5, 0.0]", one per line). Values must be finite, >= 0 and strictly decreasing; a 0 is appended
    when the list does not end in one. Errors name the 1-based item.
    """
    if not isinstance(text, str):
        raise ValueError(f"{_WHERE} must be a string, got {type(text).__name__}")
    if not text.strip() or text.strip() in ("[]", "[ ]"):
        raise ValueError(f"{_WHERE}: no values given")
    values = []
    for pos, token in enumerate(_tokens(text), start=1):
        try:
            value = float(token)
        except ValueError:
            raise ValueError(f"{_WHERE}: item {pos} {token!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{_WHERE}: item {pos} {token!r} is not finite")
        if value < 0:
            raise ValueError(f"{_WHERE}: item {pos} {token!r} is negative")
        if values and not value < values[-1]:
            raise ValueError(f"{_WHERE}: item {pos} ({value:g}) is not below item {pos - 1} "
                             f"({values[-1]:g}); sigmas must strictly decrease")
        values.append(value)
    if values[-1] != 0.0:
        values.append(0.0)
    return values


def custom(steps, ctx, text):
    """The sigmas of `text` (see parse_sigmas); `steps` must be how many it defines."""
    values = parse_sigmas(text)
    defined = len(values) - 1
    if defined == 0:
        raise ValueError(f"{_WHERE}: the text defines no steps (a lone 0)")
    if steps != defined:
        raise ValueError(f"custom: the text defines {defined} steps ({len(values)} sigmas "
                         f"ending in 0), but steps={steps}")
    return np.array(values, dtype=np.float64)
