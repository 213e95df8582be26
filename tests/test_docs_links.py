"""The manual cites only files of this repository, and each one it cites exists.

Checked in README.md, docs/*.md and benchmarks/README.md: every relative markdown link, and every path
in a code span that starts with one of the repository's folders (``eigdist_core/solvers.py``,
``tests/test_build.py::test_x``). Paths with placeholders (``<name>``, ``*``, ``…``) and the built
sets under ``stimuli/`` (git-ignored) are not files to check. A file of another project is cited with
its repository in front (``plenoptic-org/plenoptic/tests/test_eigendistortion.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
FOLDERS = ("eigdist_core", "experiments", "analysis", "eigdist", "tests", "benchmarks", "docs", "stimuli", ".ci")
CITED = re.compile(r"`((?:" + "|".join(re.escape(f) for f in FOLDERS) + r")/[^`\s]*)`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def cited_paths(page: Path) -> list[tuple[str, Path]]:
    """(as written, resolved path) of every file the page cites."""
    text = page.read_text(encoding="utf-8")
    out = []
    for link in LINK.findall(text):
        if not re.match(r"[a-z]+:", link):  # not https: or mailto:
            out.append((link, (page.parent / link).resolve()))
    for path in CITED.findall(text):
        path = path.split("::")[0].rstrip(".,;:)")
        if not re.search(r"[<>*…]|^stimuli/(?!.*\.toml$)", path):
            out.append((path, (ROOT / path).resolve()))
    return out


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_cited_file_is_in_the_repository(page):
    missing = [written for written, path in cited_paths(page)
               if not path.is_relative_to(ROOT) or not path.exists()]
    assert missing == [], f"{page.relative_to(ROOT)} cites files that are not in the repository"


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_no_page_cites_notes_outside_the_repository(page):
    assert not re.search(r"\bshared/|\bnotes/", page.read_text(encoding="utf-8"))
