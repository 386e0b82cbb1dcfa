"""Griffe extension: read rethinkgen's docstring conventions for the API reference.

The docstrings are written to be read in the source: numpy-style section titles, but types live in the
signatures, so a parameter is ``name : description`` (or ``name: description``) on one line, a ``Returns``
section is prose, and Sphinx roles (:func:`x`), reStructuredText simple tables and doctest blocks appear in
running text. Before griffe parses a docstring (numpy style), this extension rewrites that text into what the
parser and Markdown expect; the source files are not touched:

- ``name : description`` in Parameters / Other Parameters / Raises / Attributes / Warns sections becomes
  ``name`` with the description indented below it (so the description is not shown as a type);
- a prose Returns / Yields section becomes one entry without a type (the signature's annotation is used);
- ``:func:`~pkg.mod.name``` and the other Sphinx roles become inline code (``name`` with ``~``);
- reStructuredText simple tables (``=====  =====`` borders) become Markdown tables;
- doctest blocks in running text are fenced as ``pycon`` code (Examples sections are left to the parser).
"""

from __future__ import annotations

import re

try:
    import griffe
except ImportError:  # the text rewriting below is usable (and tested by `make test`) without the docs extra
    griffe = None

_SECTION_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
_ITEM_SECTIONS = {"parameters", "other parameters", "raises", "attributes", "warns", "receives"}
_PROSE_SECTIONS = {"returns", "yields"}
_ITEM = re.compile(r"^(?P<name>\*{0,2}[A-Za-z_][\w.]*(?:\s*,\s*\*{0,2}[A-Za-z_]\w*)*)\s*:\s+(?P<desc>\S.*)$")
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const|ref):`(?P<tilde>~?)(?P<target>[^`]+)`")
_TABLE_BORDER = re.compile(r"^(=+)( +=+)+\s*$")


def _roles(text: str) -> str:
    def code(match: re.Match) -> str:
        target = match.group("target").strip()
        if match.group("tilde"):
            target = target.rsplit(".", 1)[-1]
        return f"`{target}`"

    return _ROLE.sub(code, text)


def _cells(row: str, spans: list[tuple[int, int]]) -> list[str]:
    """The cells of one table row: column k runs from the start of border run k to the start of run k+1."""
    bounds = [start for start, _ in spans[1:]] + [None]
    return [_escape_pipes(row[start:end].strip()) for (start, _), end in zip(spans, bounds, strict=True)]


def _escape_pipes(cell: str) -> str:
    """Escape the ``|`` that would split a Markdown table cell (those inside code spans do not)."""
    parts = re.split(r"(`+[^`]*`+)", cell)
    return "".join(part if part.startswith("`") else part.replace("|", "\\|") for part in parts)


def _table_rows(lines: list[str], spans: list[tuple[int, int]]) -> list[list[str]]:
    """Rows of cells; a line whose first cell is empty continues the row above (reStructuredText rule)."""
    rows: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        cells = _cells(line, spans)
        if rows and not cells[0]:
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    return rows


def _tables(lines: list[str]) -> list[str]:
    """reStructuredText simple tables -> Markdown pipe tables.

    With a header: border, header, border, rows, border. Without one: border, rows, border (the Markdown
    table then gets an empty header row).
    """
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not _TABLE_BORDER.match(line):
            out.append(line)
            i += 1
            continue
        border = line.rstrip()
        spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == border), None)
        if end is None:
            out.append(line)
            i += 1
            continue
        last = None
        for j in range(end + 1, len(lines)):
            if not lines[j].strip():
                break
            if lines[j].rstrip() == border:
                last = j
                break
        if last is None:  # no header
            header, body, i_next = [""] * len(spans), lines[i + 1:end], end + 1
        else:
            header, body, i_next = _cells(lines[i + 1], spans), lines[end + 1:last], last + 1
        out += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(spans)]
        out += ["| " + " | ".join(row) + " |" for row in _table_rows(body, spans)]
        out.append("")
        i = i_next
    return out


def _sections(lines: list[str]) -> list[str]:
    """Rewrite the bodies of numpy sections written in the project's one-line style."""
    out: list[str] = []
    i = 0
    section: str | None = None
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and line.strip() and _SECTION_UNDERLINE.match(lines[i + 1]):
            section = line.strip().lower()
            out += [line, lines[i + 1]]
            i += 2
            if section in _PROSE_SECTIONS:
                body = []
                while i < len(lines) and not (
                    i + 1 < len(lines) and lines[i].strip() and _SECTION_UNDERLINE.match(lines[i + 1])
                ):
                    body.append(lines[i])
                    i += 1
                first = next((b for b in body if b.strip()), "")
                following = body[body.index(first) + 1] if first and body.index(first) + 1 < len(body) else ""
                typed = following.startswith((" ", "\t")) and following.strip()
                if first and not typed:
                    while body and not body[-1].strip():
                        body.pop()
                    out.append(":")
                    out += ["    " + b if b.strip() else "" for b in body]
                    out.append("")
                else:
                    out += body
            continue
        if section in _ITEM_SECTIONS and not line.startswith((" ", "\t")):
            match = _ITEM.match(line)
            if match:
                out += [match.group("name"), "    " + match.group("desc")]
                i += 1
                continue
        out.append(line)
        i += 1
    return out


def _doctest_blocks(lines: list[str]) -> list[str]:
    """Fence doctest blocks that stand in running text (not inside an Examples section or a fence)."""
    out: list[str] = []
    in_examples = in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and line.strip() and _SECTION_UNDERLINE.match(lines[i + 1]):
            in_examples = line.strip().lower() == "examples"
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_examples or in_fence or not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        out += ["", "```pycon"]
        while i < len(lines) and lines[i].strip():
            out.append(lines[i][indent:] if not lines[i][:indent].strip() else lines[i])
            i += 1
        out += ["```", ""]
    return out


def rewrite(text: str) -> str:
    """The docstring ``text`` as the numpy parser and Markdown expect it (see the module docstring)."""
    lines = _roles(text).split("\n")
    return "\n".join(_doctest_blocks(_sections(_tables(lines))))


if griffe is not None:

    class ProjectDocstrings(griffe.Extension):
        """Apply :func:`rewrite` to every docstring as griffe loads it."""

        def on_instance(self, *, node, obj, agent, **kwargs) -> None:
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value)
