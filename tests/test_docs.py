"""The README and docs/ run as written: every ```bash and ```python block, and every local link.

Each page's blocks run in order in one temp folder that looks like the repository root
(its top-level entries linked in, so `configs/...` and `benchmarks/...` resolve, while
`out/`, `data/` and `runs/` are the folder's own): a later block may use what an earlier one
wrote. Shell blocks run under `bash -euo pipefail` with the venv's bin first on PATH; Python
blocks with the venv's python. Blocks fenced as ```console or ```text are shown, not run: a
comment beside each names the test that covers it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CARD = ROOT / "mmt" / "models" / "music21-small" / "README.md"
BLOCK = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
RUN = ("bash", "python")
OWN = {"out", "data", "runs", ".git", ".venv"}  # written by the blocks, or not needed by them


def blocks(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(page.read_text(encoding="utf-8"))]


def runnable(page: Path) -> list[tuple[str, str]]:
    return [(lang, code) for lang, code in blocks(page) if lang in RUN]


def test_every_fence_names_its_language():
    """A block without a language would be neither run nor marked as shown-only."""
    for page in [*PAGES, CARD]:
        text = page.read_text(encoding="utf-8")
        fences = re.findall(r"^```(\S*)", text, re.MULTILINE)
        opening = fences[0::2]
        assert all(opening), f"{page.relative_to(ROOT)}: a ``` block without a language"
        assert len(fences) % 2 == 0, f"{page.relative_to(ROOT)}: an unclosed ``` block"


def run_page(page: Path, folder: Path) -> str | None:
    """Run a page's blocks in order in `folder`; the first failure's report, or None."""
    for entry in ROOT.iterdir():
        if entry.name not in OWN:
            (folder / entry.name).symlink_to(entry)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    for number, (lang, code) in enumerate(runnable(page), 1):
        if lang == "bash":
            command = ["bash", "-euo", "pipefail", "-c", code]
        else:
            script = folder / f"block_{number}.py"
            script.write_text(code, encoding="utf-8")
            command = [sys.executable, str(script)]
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            return (f"{page.relative_to(ROOT)} block {number} ({lang}) exited {done.returncode}:\n{code}\n"
                    f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
    return None


RUNNABLE = [p for p in PAGES if runnable(p)]


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory) -> dict[Path, str | None]:
    """Every page run once, two pages at a time: each block is mostly a process importing torch
    and muspy on one core, so two cores run two pages in about half the time."""
    folders = {page: tmp_path_factory.mktemp(page.stem) for page in RUNNABLE}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {page: pool.submit(run_page, page, folders[page]) for page in RUNNABLE}
        return {page: future.result() for page, future in futures.items()}


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_blocks_run_as_written(page, page_runs):
    assert page_runs[page] is None, page_runs[page]


@pytest.mark.parametrize("page", [*PAGES, CARD, ROOT / "CHANGELOG.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_local_links_resolve_inside_the_repository(page):
    text = BLOCK.sub("", page.read_text(encoding="utf-8"))
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    for target in targets:
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)}: link to {target} does not resolve"
        assert path.is_relative_to(ROOT), f"{page.relative_to(ROOT)}: link to {target} leaves the repository"


def test_readme_and_card_stay_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200
    assert len(CARD.read_text(encoding="utf-8").splitlines()) <= 100


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"
