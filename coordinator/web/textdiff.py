"""What changed between two versions of the wording, for the incident page. Pure.

Chinese text has no spaces to split words on, so an SMS or a subject is compared
character by character; the email text line by line, then the changed lines by
character, which keeps a one-word edit from showing as a whole new paragraph."""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Literal, NamedTuple

Op = Literal["same", "del", "ins"]


class Piece(NamedTuple):
    op: Op
    text: str


def inline_diff(old: str, new: str) -> list[Piece]:
    """`old` turned into `new` as runs kept, deleted and inserted (character level)."""
    pieces: list[Piece] = []
    matcher = SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pieces.append(Piece("same", old[i1:i2]))
            continue
        if i2 > i1:
            pieces.append(Piece("del", old[i1:i2]))
        if j2 > j1:
            pieces.append(Piece("ins", new[j1:j2]))
    return pieces


def text_diff(old: str, new: str) -> list[Piece]:
    """Line level first (unchanged lines kept whole), then character level inside a
    changed block."""
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    pieces: list[Piece] = []
    matcher = SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pieces.append(Piece("same", "".join(old_lines[i1:i2])))
        else:
            pieces.extend(inline_diff("".join(old_lines[i1:i2]), "".join(new_lines[j1:j2])))
    return pieces


def changed(pieces: list[Piece]) -> bool:
    return any(p.op != "same" for p in pieces)
