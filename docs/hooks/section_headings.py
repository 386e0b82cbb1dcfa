"""MkDocs hook: lift the headings of docs/sections/*.md one level.

Those pages start with a ``## Title`` line (they were once parts of one long README, and keep that
convention). On the site each is its own page, so its ``##`` title becomes the page's
``#`` heading and every ``###`` a ``##``. Lines inside fenced code blocks (``` or ~~~) are left alone, so a
``## comment`` in a shell example stays as written. Anchors do not change: they come from the heading text.
"""

from __future__ import annotations

import re

_HEADING = re.compile(r"^(#{2,6})(\s)")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def lift_headings(markdown: str) -> str:
    """Remove one ``#`` from every ATX heading of level 2 to 6 outside fenced code blocks."""
    out = []
    fence: str | None = None
    for line in markdown.split("\n"):
        match = _FENCE.match(line)
        if match:
            marker = match.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
        elif fence is None:
            line = _HEADING.sub(lambda m: m.group(1)[1:] + m.group(2), line)
        out.append(line)
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):
    src = page.file.src_uri
    if src.startswith("sections/") and markdown.lstrip().startswith("## "):
        return lift_headings(markdown)
    return markdown
