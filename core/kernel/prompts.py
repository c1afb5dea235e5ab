"""Own your prompts (Factor 2): versioned files ``prompts/<agent>/vN.md``, rendered by a tiny function.

Each prompt's content hash is recorded on every ``llm_call`` event, so a thread always says exactly
which prompt text produced each decision. Changing the file changes the hash.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "prompts"
_FRONT = re.compile(r"\A---\n(?P<meta>.*?)\n---\n(?P<body>.*)\Z", re.DOTALL)
_REQUIRED = ("id", "version", "description")


class PromptError(ValueError):
    """A prompt file is missing or malformed."""


@dataclass(frozen=True)
class Prompt:
    id: str
    version: int
    description: str
    body: str
    hash: str

    @property
    def ref(self) -> str:
        """``travel/v1``: the id and version an agent pins."""
        return f"{self.id}/v{self.version}"

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    def render(self, **values: str) -> str:
        """Fill ``${name}`` placeholders; a missing value is an error, not an empty string."""
        try:
            return Template(self.body).substitute(values)
        except KeyError as exc:
            raise PromptError(f"prompt {self.ref} needs a value for ${{{exc.args[0]}}}") from None
        except ValueError as exc:
            raise PromptError(
                f"prompt {self.ref} has a '$' that is not a ${{name}} placeholder ({exc} of the body); "
                "write '$$' for a literal '$'"
            ) from None


def parse_prompt(text: str, *, source: str = "<string>") -> Prompt:
    """Parse a prompt file's text: a small ``key: value`` front matter, then the body."""
    match = _FRONT.match(text.replace("\r\n", "\n"))
    if match is None:
        raise PromptError(f"{source}: a prompt starts with a '---' front matter block (id, version, description)")
    meta: dict[str, str] = {}
    for line in match["meta"].splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PromptError(f"{source}: front matter line {line!r} is not 'key: value'")
        meta[key.strip()] = value.strip()
    missing = [k for k in _REQUIRED if not meta.get(k)]
    if missing:
        raise PromptError(f"{source}: front matter is missing {', '.join(missing)}")
    try:
        version = int(meta["version"].lstrip("v"))
    except ValueError:
        raise PromptError(f"{source}: version must be a number, got {meta['version']!r}") from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Prompt(meta["id"], version, meta["description"], match["body"].strip() + "\n", digest)


class PromptLibrary:
    """Loads prompts from a directory; each file is read once per process."""

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.root = root
        self._cache: dict[tuple[str, int], Prompt] = {}

    def load(self, prompt_id: str, version: int) -> Prompt:
        key = (prompt_id, version)
        if key not in self._cache:
            path = self.root / prompt_id / f"v{version}.md"
            if not path.is_file():
                have = sorted(p.stem for p in (self.root / prompt_id).glob("v*.md"))
                raise PromptError(f"no prompt {prompt_id}/v{version} at {path}; versions found: {have or 'none'}")
            prompt = parse_prompt(path.read_text(encoding="utf-8"), source=str(path))
            if prompt.id != prompt_id or prompt.version != version:
                raise PromptError(f"{path}: front matter says {prompt.ref}, the path says {prompt_id}/v{version}")
            self._cache[key] = prompt
        return self._cache[key]

    def versions(self, prompt_id: str) -> list[int]:
        return sorted(int(p.stem[1:]) for p in (self.root / prompt_id).glob("v*.md") if p.stem[1:].isdigit())
