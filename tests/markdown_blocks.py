"""Fenced code blocks of a Markdown document, for the tests that run the docs (guide, client)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FencedBlock", "fenced_blocks"]

FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")


@dataclass(frozen=True)
class FencedBlock:
    number: int  # 1-based, among the blocks of the language asked for
    line: int  # of the opening fence, 1-based
    code: str
    before: str  # the last non-blank line before the fence (a marker comment, say)


def fenced_blocks(text: str, language: str, source: str) -> list[FencedBlock]:
    """The blocks fenced as ``language`` in order; other fenced blocks are skipped.

    Raises:
        AssertionError: a fence is never closed (``source`` and the line in the message).
    """
    blocks: list[FencedBlock] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, found = opening.groups()
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        if j == len(lines):
            raise AssertionError(f"{source} line {i + 1}: fenced block never closed")
        if found == language:
            before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
            blocks.append(FencedBlock(len(blocks) + 1, i + 1, "\n".join(lines[i + 1 : j]), before))
        i = j + 1
    return blocks
