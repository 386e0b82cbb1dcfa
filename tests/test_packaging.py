"""The project's metadata installs without warnings: `make demo` / `make test` on a fresh machine print pip's
output, and setuptools (>= 77) warns at every build when `license` is a TOML table instead of an SPDX string."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_expression_that_the_required_setuptools_reads():
    data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert isinstance(data["project"]["license"], str), "license = { text = ... } is deprecated: use an SPDX string"
    # setuptools reads an SPDX `license` from version 77 on; an older one would refuse the string
    setuptools = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    assert len(setuptools) == 1
    floor = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools[0])
    assert floor is not None and int(floor.group(1)) >= 77, setuptools[0]
