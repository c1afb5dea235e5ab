"""What a model reads, counted with a real tokenizer: the honest baseline of benchmark 5 (context size).

Two sides, both counted the way OpenAI's cookbook "How to count tokens with tiktoken" counts a chat-completions
request (checked there against the API's ``prompt_tokens``):

- every message costs 3 framing tokens plus the tokens of its role and its content; every reply is primed with 3;
- the tool definitions cost the cookbook's ``num_tokens_for_tools`` figure (gpt-4o constants: 7 a function, 3 for
  its properties, 3 a property, -3 for an enum and 3 an enum item, 12 at the end, plus each ``name:description``
  and ``property:type:description`` line).

The cookbook has no rule for an assistant message that carries a tool call, or for a tool message. We count what
the model must read and nothing else: the function's name and its arguments as the compact JSON the API returns,
and the tool message's content; no call ids (OpenAI's published rendering of tool calls, the harmony format, has
none), no ``type``/``function`` wrappers. That is the smallest the chat-messages form can be, so a saving measured
against it is a saving against any framework that sends those messages.

The tokenizers are tiktoken's ``o200k_base`` (GPT-4o, GPT-4.1, o-series, GPT-5) and ``cl100k_base`` (GPT-4,
GPT-3.5). tiktoken downloads its vocabulary files at run time from a host this machine cannot reach; the same files
ship inside a PyPI wheel (``litellm``, under ``litellm/litellm_core_utils/tokenizers/``, named as tiktoken's cache
names them), so :func:`encodings` fetches that wheel once with ``pip download --no-deps``, unpacks the two files and
points ``TIKTOKEN_CACHE_DIR`` at them. tiktoken checks each file's SHA-256 against the one it expects before using
it, so a wrong file fails loudly instead of counting wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, installed
from core.kernel.model import ToolSpec

TokenCount = Callable[[str], int]

LITELLM = "litellm==1.110.2"
"""The wheel that ships tiktoken's vocabulary files (about 44 MB, downloaded once into ``WHEELS``)."""
WHEEL_OF_ANY_MACHINE = (
    "--only-binary=:all:",
    "--platform=manylinux_2_28_x86_64",
    "--python-version=3.11",
    "--implementation=cp",
)
"""The same wheel on every machine (only its data files are read), never an sdist to build."""
WHEELS = ROOT / ".venv-bench" / "wheels"
VOCABS = ROOT / ".venv-bench" / "tokenizers"
CACHE_NAMES = {
    "o200k_base": "fb374d419588a4632f3f557e76b4b70aebbca790",
    "cl100k_base": "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
}
"""tiktoken's cache file name of each encoding (the SHA-1 of its download URL)."""

TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3
FUNC_INIT, PROP_INIT, PROP_KEY, ENUM_INIT, ENUM_ITEM, FUNC_END = 7, 3, 3, -3, 3, 12
"""The cookbook's gpt-4o constants for tool definitions."""


class TokenizerMissingError(RuntimeError):
    """tiktoken is not installed in this interpreter."""


def vocabularies() -> Path:
    """The folder holding tiktoken's cache files for both encodings, unpacked from the litellm wheel."""
    if all((VOCABS / name).exists() for name in CACHE_NAMES.values()):
        return VOCABS
    wheels = sorted(WHEELS.glob("litellm-*.whl"))
    if not wheels:
        WHEELS.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *WHEEL_OF_ANY_MACHINE, LITELLM]
        done = subprocess.run([*command, "-d", str(WHEELS)], capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"`{' '.join(command[2:])}` failed (benchmark 5 reads its vocabularies):\n{done.stderr}")
        wheels = sorted(WHEELS.glob("litellm-*.whl"))
    VOCABS.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for name in CACHE_NAMES.values():
            (VOCABS / name).write_bytes(wheel.read(f"litellm/litellm_core_utils/tokenizers/{name}"))
    return VOCABS


def encodings() -> dict[str, TokenCount]:
    """A token counter per encoding name; raises :class:`TokenizerMissingError` without tiktoken."""
    if not installed("tiktoken"):
        raise TokenizerMissingError(
            "tiktoken is not installed in this interpreter: run `make bench` (or "
            "`.venv-bench/bin/python benchmarks/context_size.py` after `make bench-setup`); benchmark 5 counts "
            "tokens with a real tokenizer only"
        )
    os.environ["TIKTOKEN_CACHE_DIR"] = str(vocabularies())
    import tiktoken  # type: ignore[import-not-found, unused-ignore]

    out: dict[str, TokenCount] = {}
    for name in CACHE_NAMES:
        encoding = tiktoken.get_encoding(name)
        out[name] = _counter(encoding)
    return out


def _counter(encoding: Any) -> TokenCount:
    return lambda text: len(encoding.encode(text, disallowed_special=()))


# --- the two sides ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One chat message as the model reads it: its role and the texts of its content, each counted on its own."""

    role: str
    parts: tuple[str, ...]


def message_tokens(messages: Sequence[Message], count: TokenCount) -> int:
    """The cookbook's ``num_tokens_from_messages``: 3 a message, its role and content, 3 for the reply."""
    return sum(TOKENS_PER_MESSAGE + count(m.role) + sum(map(count, m.parts)) for m in messages) + REPLY_PRIMING


def tool_tokens(tools: Sequence[ToolSpec], count: TokenCount) -> int:
    """The cookbook's ``num_tokens_for_tools`` (gpt-4o constants), reading our JSON schemas.

    A property with no ``type`` (a union, a reference) counts as ``object``, one with no description as an
    empty one: the same on both sides of the comparison.
    """
    total = 0
    for tool in tools:
        total += FUNC_INIT + count(f"{tool.name}:{tool.description.removesuffix('.')}")
        properties: Mapping[str, Any] = tool.parameters.get("properties", {})
        if properties:
            total += PROP_INIT
            for key, schema in properties.items():
                total += PROP_KEY
                for item in schema.get("enum", ()):
                    total += ENUM_ITEM + count(str(item))
                if "enum" in schema:
                    total += ENUM_INIT
                description = str(schema.get("description", "")).removesuffix(".")
                total += count(f"{key}:{schema.get('type', 'object')}:{description}")
    return total + (FUNC_END if tools else 0)


def compact(value: Any) -> str:
    """A value as the compact JSON an API puts in a tool call's ``arguments`` (strings as they are)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def call_message(name: str, arguments: Any) -> Message:
    """An assistant message carrying one tool call: the function's name and its arguments, nothing else."""
    return Message("assistant", (name, compact(arguments)))


def tool_message(content: Any) -> Message:
    """A ``tool`` message: the result as the framework serialises it (compact JSON, the smallest form)."""
    return Message("tool", (compact(content),))


def request_tokens(system: str, messages: Sequence[Message], tools: Sequence[ToolSpec], count: TokenCount) -> int:
    """One chat-completions request: the system message, the messages, the tool definitions."""
    return message_tokens([Message("system", (system,)), *messages], count) + tool_tokens(tools, count)
