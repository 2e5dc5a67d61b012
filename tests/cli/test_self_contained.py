"""The repository stands on its own: no tracked file points at documents outside it.

The method, the published numbers and the design are written down in ``docs/``; a reference to
a planning document kept outside the repository, or to a numbered issue of some tracker, means
nothing to a reader of a clone. Every tracked text file is scanned (``git ls-files``).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

# Built from pieces so that this file does not match itself.
_DOC_NAMES = ("METHOD", "BENCHMARKS", "STYLE")
FORBIDDEN = re.compile(
    "|".join(
        [*(rf"\b{name}\.md\b" for name in _DOC_NAMES), r"shared/" + "docs", r"\b[Ii]ssues? #?\d+"]
    )
)


def tracked_text_files() -> list[str]:
    """Paths (relative to the repository root) of the tracked files that are text."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True
    ).stdout.decode()
    paths = []
    for path in filter(None, out.split("\0")):
        file = REPO / path
        if not file.is_file():  # deleted in the work tree, not yet committed
            continue
        data = file.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        paths.append(path)
    return paths


def find_references(paths: list[str]) -> list[str]:
    """``path:line: text`` of every forbidden reference in ``paths``."""
    hits = []
    for path in paths:
        text = (REPO / path).read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path}:{number}: {line.strip()}")
    return hits


def test_pattern_catches_what_it_should() -> None:
    for bad in (
        "see " + "METHOD" + ".md section 2",
        "BENCHMARKS" + ".md table",
        "../shared/" + "docs/x",
        "Issue" + " 6 measured",
        "(issue" + " 3, point 7)",
        "issues" + " #12",
    ):
        assert FORBIDDEN.search(bad), bad
    clean = ("docs/method.md", "../shared/data", "an issue with", "tissue" + " 3", "RESULTS.md")
    for text in clean:
        assert not FORBIDDEN.search(text), text


def test_no_tracked_file_refers_outside_the_repository() -> None:
    hits = find_references(tracked_text_files())
    assert not hits, "references outside the repository:\n" + "\n".join(hits)
