"""Code comments cite ARCHITECTURE.md by section; every cited section exists, and no comment cites a file that
is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "agents", "functions", "infra", "benchmarks", "tests")
CITATION = re.compile(r'ARCHITECTURE\.md,?\s*(?:\(\s*)?"([A-Za-z][A-Za-z \n#,-]{2,80})"')


def _sources() -> list[Path]:
    return [p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if ".venv" not in p.parts]


def test_every_cited_section_exists() -> None:
    sections = {m.strip() for m in re.findall(r"^#{2,3} (.+)$", (ROOT / "ARCHITECTURE.md").read_text(), re.MULTILINE)}
    missing = [
        f"{path.relative_to(ROOT)}: {section!r}"
        for path in _sources()
        for cited in CITATION.findall(path.read_text(encoding="utf-8"))
        if (section := re.sub(r"\s+#?\s*", " ", cited).strip()) not in sections
    ]
    assert not missing, f"cited sections not in ARCHITECTURE.md ({sorted(sections)}): {missing}"


def test_no_comment_cites_notes_outside_the_repository() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in _sources()
        if path.name != Path(__file__).name and re.search(r"\b(DESIGN|STYLE)\.md\b", path.read_text(encoding="utf-8"))
    ]
    assert not offenders
