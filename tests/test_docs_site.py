"""The documentation site's own code and structure, checked without building it (``make docs`` builds it).

- every user-guide page in docs/sections is in the site's navigation (a page left out would be unreachable);
- the README stays short and its links lead to pages that exist;
- the heading hook lifts a section page's headings one level and leaves code blocks alone;
- the griffe extension turns the project's docstring conventions into what the numpy parser expects.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOOKS = REPO / "docs" / "hooks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hooks_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_section_page_is_in_the_nav_and_starts_with_its_title():
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted((REPO / "docs" / "sections").glob("*.md"))
    assert len(pages) >= 9
    for page in pages:
        assert f"sections/{page.name}" in nav, f"docs/sections/{page.name} is missing from the nav in mkdocs.yml"
        first = page.read_text(encoding="utf-8").lstrip().splitlines()[0]
        assert first.startswith("## "), f"docs/sections/{page.name} must start with a '## Title' line"


def test_no_page_links_to_a_readme_anchor():
    """The README is short now: the guide's links go to pages (`sweeps.md#...`), not to `README.md#...`."""
    for page in (REPO / "docs").rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"\]\((\.\./)*README\.md#", text), f"{page} links into README.md"


def test_the_readme_is_short_shows_the_set_up_and_links_to_existing_pages():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "make demo" in readme and "make test" in readme and ".venv/bin/rethinkgen" in readme
    targets = re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", readme)
    assert len(targets) >= 10
    for target in targets:
        assert (REPO / target).is_file(), f"README.md links to {target}, which does not exist"


def test_section_headings_are_lifted_outside_code_blocks():
    lift = _load("section_headings").lift_headings
    page = "\n".join([
        "## Sweeps",
        "text",
        "### A sweep spec",
        "```bash",
        "## a shell comment, not a heading",
        "```",
        "#### Deeper",
        "~~~",
        "### inside a tilde fence",
        "~~~",
        "# already h1 stays",
    ])
    assert lift(page).split("\n") == [
        "# Sweeps",
        "text",
        "## A sweep spec",
        "```bash",
        "## a shell comment, not a heading",
        "```",
        "### Deeper",
        "~~~",
        "### inside a tilde fence",
        "~~~",
        "# already h1 stays",
    ]


def test_docstring_conventions_are_rewritten_for_the_numpy_parser():
    rewrite = _load("griffe_docstrings").rewrite
    doc = "\n".join([
        "Build the model (see :func:`~rethinkgen.models.list_models`).",
        "",
        ">>> 1 + 1",
        "2",
        "",
        "=====  =====",
        "name   lr",
        "=====  =====",
        "mlp    0.01",
        "=====  =====",
        "",
        "Parameters",
        "----------",
        "name : registry name; unknown names raise.",
        "n_train, n_test: sample counts, the second line",
        "    of the description.",
        "",
        "Returns",
        "-------",
        "An ``nn.Module`` mapping inputs",
        "to logits.",
        "",
        "Examples",
        "--------",
        ">>> 2 + 2",
        "4",
    ])
    out = rewrite(doc).split("\n")
    assert out[0] == "Build the model (see `list_models`)."
    assert out[out.index("```pycon") + 1:out.index("```pycon") + 3] == [">>> 1 + 1", "2"]
    assert "| name | lr |" in out and "| mlp | 0.01 |" in out
    params = out.index("Parameters")
    assert out[params + 2:params + 7] == [
        "name", "    registry name; unknown names raise.",
        "n_train, n_test", "    sample counts, the second line", "    of the description.",
    ]
    returns = out.index("Returns")
    assert out[returns + 2:returns + 5] == [":", "    An ``nn.Module`` mapping inputs", "    to logits."]
    examples = out.index("Examples")
    assert out[examples + 2:] == [">>> 2 + 2", "4"]  # left to the parser, not fenced
    assert out.count("```pycon") == 1


def test_rst_tables_without_header_and_with_continuation_rows_become_markdown_tables():
    rewrite = _load("griffe_docstrings").rewrite
    doc = "\n".join([
        "Events:",
        "",
        "=========  ==============================",
        "``epoch``  one epoch ended; status ``a | b``",
        "failed     the run raised (converged | max)",
        "           and its traceback is kept",
        "=========  ==============================",
        "",
        "After the table.",
    ])
    out = rewrite(doc).split("\n")
    assert out[out.index("|  |  |") + 1] == "|---|---|"
    assert "| ``epoch`` | one epoch ended; status ``a | b`` |" in out  # code spans keep their pipes
    assert "| failed | the run raised (converged \\| max) and its traceback is kept |" in out
    assert out[-1] == "After the table." and not any(line.startswith("====") for line in out)
