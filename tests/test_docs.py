"""README.md, docs/ and BENCHMARKS.md cite only what exists: relative links, repo paths, `deit.` names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "BENCHMARKS.md"]
# A code span that names a file or folder of the repository: it starts at one of its top-level folders.
REPO_PATH = re.compile(r"^(?:src|tests|benchmarks|docs|\.ci|deit)/[\w./-]*$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
MODULE = re.compile(r"^deit(?:\.[A-Za-z_]\w*)+")
# A project document named bare, in or out of a code span (README.md, BENCHMARKS.md): it must be in the repo.
PROJECT_DOC = re.compile(r"\b[A-Z][A-Z_]+\.md\b")
REPO_FILE_NAMES = {path.name for path in ROOT.rglob("*.md") if ".git" not in path.parts and ".venv" not in path.parts}


def cited_paths(text: str) -> set[str]:
    """Repo paths in code spans, e.g. `src/deit/cli.py` or `benchmarks/demo_sweep/` (a `deit/...` is under src/)."""
    found = set()
    for span in CODE_SPAN.findall(text):
        for token in span.split():
            token = token.rstrip(".,;:)")
            if REPO_PATH.match(token) and "*" not in token:
                found.add(token)
    return found


def resolve_repo_path(token: str) -> Path:
    return ROOT / "src" / token if token.startswith("deit/") else ROOT / token


def cited_modules(text: str) -> set[str]:
    """Dotted names in code spans that start with `deit.`, e.g. `deit.inference.predict.predict`."""
    return {match.group(0) for span in CODE_SPAN.findall(text) if (match := MODULE.match(span.strip()))}


def module_and_rest(dotted: str) -> tuple[Path | None, list[str]]:
    """The source file of the longest module prefix of `dotted`, and the names after it."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        base = ROOT / "src" / Path(*parts[:end])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate, parts[end:]
    return None, parts


def broken_links(folder: Path, text: str) -> list[str]:
    """Relative Markdown link targets in `text` (a file in `folder`) that do not exist; URLs and anchors pass."""
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"^[a-z]+:", target)
        and not target.startswith("#")
        and not (folder / target.split("#")[0]).exists()
    ]


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_relative_links_resolve(doc: Path) -> None:
    broken = broken_links(doc.parent, doc.read_text())
    assert not broken, f"{doc.name}: links to missing files: {broken}"


def missing_paths(text: str) -> list[str]:
    """The repo paths (and bare project documents, e.g. DESIGN.md) `text` cites that do not exist."""
    missing = {token for token in cited_paths(text) if not resolve_repo_path(token).exists()}
    missing |= {name for name in PROJECT_DOC.findall(text) if name not in REPO_FILE_NAMES}
    return sorted(missing)


def missing_modules(text: str) -> list[str]:
    """The `deit.` names `text` cites whose module is missing or does not mention the next name."""
    missing = []
    for dotted in sorted(cited_modules(text)):
        source, rest = module_and_rest(dotted)
        if source is None or rest and not re.search(rf"\b{re.escape(rest[0])}\b", source.read_text()):
            missing.append(dotted)
    return missing


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_cited_repo_paths_exist(doc: Path) -> None:
    missing = missing_paths(doc.read_text())
    assert not missing, f"{doc.name}: cites paths that are not in the repo: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_cited_modules_exist(doc: Path) -> None:
    missing = missing_modules(doc.read_text())
    assert not missing, f"{doc.name}: cites deit names that do not exist: {missing}"


def test_the_docs_cite_paths_and_modules_at_all() -> None:
    # The scan must see the citations it checks: a pattern that matched nothing would pass every doc.
    text = "\n".join(doc.read_text() for doc in DOCS)
    assert {"src/deit/demo/experiment.py", "benchmarks/demo_sweep/stage1.py"} <= cited_paths(text)
    assert "deit.inference.evaluation.evaluate_checkpoint" in cited_modules(text)


def test_the_checks_catch_a_bad_citation() -> None:
    text = (
        "see DESIGN.md, BENCHMARKS.md, `src/deit/tools/demo.py`, `deit/cli.py`, `deit.tools.bench.benchmark`, "
        "`deit.cli.no_such_name` and `deit.cli.main`; [a link](docs/nowhere.md)"
    )
    assert missing_paths(text) == ["DESIGN.md", "src/deit/tools/demo.py"]
    assert missing_modules(text) == ["deit.cli.no_such_name", "deit.tools.bench.benchmark"]
    assert broken_links(ROOT, text + " [ok](README.md#usage) [web](https://example.org)") == ["docs/nowhere.md"]
