"""Reading README.md the way the tests that run it need: its fenced blocks by section, and output normalised.

Ids (a thread or approval id is new on every run), the scripted model's token counts and nominal costs (they
move with every prompt or rendering change), signed links' ``exp``/``sig`` and generated secrets differ from run
to run; :func:`normal` replaces them with placeholders so a README transcript can be compared line for line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
APPROVAL = re.compile(r"\bapr_[0-9a-f]{16}\b")
_FIGURES = (
    (re.compile(r"tokens \d+\+\d+"), "tokens N+N"),
    (re.compile(r"\d+\+\d+ tokens"), "N+N tokens"),
    (re.compile(r"\$\d+\.\d+"), "$N"),
    (re.compile(r"exp=[^&\s]+&sig=\S+"), "exp=N&sig=S"),  # a signed link
    (re.compile(r"(SECRET)=\S+"), r"\1=S"),  # serve's generated webhook secrets
)


@dataclass(frozen=True)
class Block:
    section: str
    """The nearest ``##``/``###`` heading above the block."""
    lang: str
    body: str

    @property
    def first_line(self) -> str:
        return self.body.strip().splitlines()[0].strip() if self.body.strip() else ""


def blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the README (nested in a list item or not), in order."""
    text = README.read_text(encoding="utf-8") if text is None else text
    found: list[Block] = []
    section, lang, inside, indent = "", "", False, ""
    body: list[str] = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if not inside and line.startswith("#"):
            section = line.lstrip("#").strip()
        elif stripped.startswith("```") and not inside:
            inside, lang, body, indent = True, stripped[3:].strip(), [], line[: len(line) - len(stripped)]
        elif stripped.startswith("```") and inside:
            found.append(Block(section, lang, "\n".join(body) + "\n"))
            inside = False
        elif inside:
            body.append(line[len(indent) :] if line.startswith(indent) else line)
    return found


def normal(lines: Iterable[str]) -> list[str]:
    """``lines`` with approval ids, figures, signed links and secrets as placeholders, trailing spaces gone."""
    out = []
    for line in lines:
        text = APPROVAL.sub("apr_ID", line)
        for pattern, placeholder in _FIGURES:
            text = pattern.sub(placeholder, text)
        out.append(text.rstrip())
    return out


def missing_in_order(shown: list[str], printed: list[str]) -> list[str]:
    """The lines of ``shown`` that ``printed`` does not hold in the same order (empty when all are there)."""
    rest = iter(printed)
    for index, line in enumerate(shown):
        if not any(line == candidate for candidate in rest):
            return shown[index:]
    return []
