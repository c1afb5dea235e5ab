"""Static checks for Amazon States Language files, run before anything executes them.

Neither cfn-lint (the template points at the file through ``DefinitionUri``) nor moto's
``create_state_machine`` looks inside a definition: a ``Next`` naming a missing state only fails
at run time. This module catches such mistakes offline.

Usage: ``python -m infra.asl_check [--set Name=Value]... FILE...``. Each ``${Name}`` placeholder (a Step
Functions ``DefinitionSubstitutions`` key) is first replaced by a dummy: inside a JSON string by a string, bare by a
number, as the real substitution produces JSON only once numbers are filled in. A placeholder that names a state
(``"StartAt": "${LoopEntry}"``) needs a real value, given with ``--set``: run the check once per value the template
can substitute.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["check", "count_states", "dummy_substitute", "main", "placeholders", "substitute"]

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DUMMY_NUMBER = 1

_TERMINAL_TYPES = frozenset({"Succeed", "Fail"})
_FLOW_TYPES = frozenset({"Task", "Pass", "Wait", "Parallel", "Map"})
_STATE_TYPES = _TERMINAL_TYPES | _FLOW_TYPES | {"Choice"}
_PAYLOAD_FIELDS = ("Parameters", "ResultSelector", "ItemSelector")
_PATH_FIELDS = ("InputPath", "OutputPath", "ResultPath", "ItemsPath")
_SECONDS_FIELDS = ("TimeoutSeconds", "HeartbeatSeconds")
_RETRIER_INTS = {"IntervalSeconds": 1, "MaxAttempts": 0, "MaxDelaySeconds": 1}
_JITTER = frozenset({"FULL", "NONE"})
_RULE_COMBINATORS = ("And", "Or", "Not")
_NUMERIC_OPS = frozenset(
    {
        "NumericEquals",
        "NumericGreaterThan",
        "NumericGreaterThanEquals",
        "NumericLessThan",
        "NumericLessThanEquals",
    }
)
_STRING_OPS = frozenset(
    {
        "StringEquals",
        "StringGreaterThan",
        "StringGreaterThanEquals",
        "StringLessThan",
        "StringLessThanEquals",
        "StringMatches",
        "TimestampEquals",
        "TimestampGreaterThan",
        "TimestampGreaterThanEquals",
        "TimestampLessThan",
        "TimestampLessThanEquals",
    }
)
_BOOL_OPS = frozenset({"BooleanEquals", "IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"})
_PATH_OPS = frozenset(f"{op}Path" for op in _NUMERIC_OPS | (_STRING_OPS - {"StringMatches"}) | {"BooleanEquals"})
_COMPARISONS = _NUMERIC_OPS | _STRING_OPS | _BOOL_OPS | _PATH_OPS


# --- placeholders -------------------------------------------------------------------------------


def _scan(text: str) -> Iterator[tuple[re.Match[str], bool]]:
    """Yield each placeholder match with whether it sits inside a JSON string literal."""
    in_string = False
    escaped = False
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        for char in text[pos : match.start()]:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = in_string
            elif char == '"':
                in_string = not in_string
        pos = match.start()
        yield match, in_string


def placeholders(text: str) -> set[str]:
    """Names of all ``${Name}`` placeholders in ``text``."""
    return {match.group(1) for match in _PLACEHOLDER.finditer(text)}


def substitute(text: str, values: Mapping[str, object]) -> str:
    """Replace every ``${Name}`` by ``values[Name]``, the way DefinitionSubstitutions does.

    Like Step Functions, the replacement is textual: a bare placeholder (outside any JSON string)
    receives ``str(value)`` verbatim, so numbers come out as JSON numbers. Inside a JSON string the
    value is escaped so that it cannot break the document.

    Raises:
        KeyError: some placeholder has no value; the message lists all of them.
    """
    missing = sorted(placeholders(text) - values.keys())
    if missing:
        raise KeyError(f"no value for placeholder(s): {', '.join(missing)}")
    parts: list[str] = []
    pos = 0
    for match, in_string in _scan(text):
        value = values[match.group(1)]
        rendered = json.dumps(str(value))[1:-1] if in_string else _bare(value)
        parts += [text[pos : match.start()], rendered]
        pos = match.end()
    parts.append(text[pos:])
    return "".join(parts)


def _bare(value: object) -> str:
    if isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def dummy_substitute(text: str, given: Mapping[str, object] | None = None) -> str:
    """Substitute dummies: ``dummy-<Name>`` inside strings, the number 1 for bare placeholders; ``given`` values
    win (a placeholder that names a state needs a real one)."""
    values: dict[str, object] = dict(given or {})
    for match, in_string in _scan(text):
        name = match.group(1)
        if given and name in given:
            continue
        if in_string:
            values.setdefault(name, f"dummy-{name}")
        else:
            values[name] = _DUMMY_NUMBER
    return substitute(text, values)


# --- the checks ---------------------------------------------------------------------------------


def check(definition: dict[str, Any]) -> list[str]:
    """Return one line per problem found in a (substituted, parsed) state machine definition.

    Each line starts with the state's name (nested states as ``Parent/Branch[i]/Name``), or with
    ``(definition)`` for problems of the document itself. An empty list means no problem found.
    """
    problems: list[str] = []
    _check_machine(definition, "", problems)
    return problems


def count_states(definition: object) -> int:
    """Number of states, counting those nested in Parallel branches and Map processors."""
    states = definition.get("States") if isinstance(definition, dict) else None
    if not isinstance(states, dict):
        return 0
    total = len(states)
    for state in states.values():
        if isinstance(state, dict):
            total += sum(count_states(sub) for sub in _sub_machines(state).values())
    return total


def _check_machine(machine: object, prefix: str, problems: list[str]) -> None:
    where = prefix.rstrip("/") or "(definition)"
    if not isinstance(machine, dict):
        problems.append(f"{where}: a state machine must be a JSON object")
        return
    states = machine.get("States")
    if not isinstance(states, dict) or not states:
        problems.append(f"{where}: 'States' must be a non-empty object")
        return
    start = machine.get("StartAt")
    if not isinstance(start, str):
        problems.append(f"{where}: 'StartAt' is missing or not a string")
    elif start not in states:
        problems.append(f"{where}: StartAt names a state that does not exist: {start!r}")

    for name, state in states.items():
        label = f"{prefix}{name}"
        if not isinstance(state, dict):
            problems.append(f"{label}: a state must be a JSON object")
            continue
        _check_state(label, state, states, problems)
        for sub_label, sub in _sub_machines(state).items():
            _check_machine(sub, f"{label}/{sub_label}/", problems)

    if isinstance(start, str) and start in states:
        _check_graph(start, states, prefix, problems)


def _sub_machines(state: dict[str, Any]) -> dict[str, object]:
    subs: dict[str, object] = {}
    branches = state.get("Branches")
    if state.get("Type") == "Parallel" and isinstance(branches, list):
        subs.update({f"Branch[{i}]": branch for i, branch in enumerate(branches)})
    if state.get("Type") == "Map":
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                subs[key] = state[key]
    return subs


def _check_state(label: str, state: dict[str, Any], states: dict[str, Any], problems: list[str]) -> None:
    kind = state.get("Type")
    if kind not in _STATE_TYPES:
        problems.append(f"{label}: unknown or missing Type {kind!r}")
        return

    has_next = "Next" in state
    ends = state.get("End") is True
    if "End" in state and not isinstance(state["End"], bool):
        problems.append(f"{label}: End must be true or false")
    if kind in _FLOW_TYPES:
        if has_next and ends:
            problems.append(f"{label}: has both Next and End")
        elif not has_next and not ends:
            problems.append(f"{label}: a {kind} state needs Next or End: true")
    elif has_next or "End" in state:
        problems.append(f"{label}: a {kind} state cannot have Next or End")

    if has_next:
        _check_target(label, "Next", state["Next"], states, problems)
    if kind == "Choice":
        _check_choice(label, state, states, problems)
    if kind == "Task" and not isinstance(state.get("Resource"), str):
        problems.append(f"{label}: a Task needs a string Resource")
    if kind == "Wait":
        _check_wait(label, state, problems)
    if kind == "Fail":
        for field in ("Error", "Cause"):
            if field in state and f"{field}Path" in state:
                problems.append(f"{label}: has both {field} and {field}Path")
            if f"{field}Path" in state and not _is_path_or_intrinsic(state[f"{field}Path"]):
                problems.append(f"{label}: {field}Path must be a JSONPath or an intrinsic function")

    for field in _SECONDS_FIELDS:
        if field in state and not _is_int(state[field], minimum=1):
            problems.append(f"{label}: {field} must be a positive integer, got {state[field]!r}")
    for field in _PATH_FIELDS:
        if field in state and state[field] is not None and not _is_path(state[field]):
            problems.append(f"{label}: {field} must be a JSONPath string or null, got {state[field]!r}")
    for field in _PAYLOAD_FIELDS:
        if field in state:
            _check_payload(label, field, state[field], problems)
    if "Retry" in state:
        _check_retry(label, state["Retry"], problems)
    if "Catch" in state:
        _check_catch(label, state["Catch"], states, problems)


def _check_target(label: str, field: str, target: object, states: dict[str, Any], problems: list[str]) -> None:
    if not isinstance(target, str):
        problems.append(f"{label}: {field} must be a state name, got {target!r}")
    elif target not in states:
        problems.append(f"{label}: {field} names a state that does not exist: {target!r}")


def _check_choice(label: str, state: dict[str, Any], states: dict[str, Any], problems: list[str]) -> None:
    choices = state.get("Choices")
    if not isinstance(choices, list) or not choices:
        problems.append(f"{label}: a Choice state needs a non-empty Choices list")
        choices = []
    for i, rule in enumerate(choices):
        where = f"{label}: Choices[{i}]"
        if not isinstance(rule, dict):
            problems.append(f"{where} must be an object")
            continue
        if "Next" not in rule:
            problems.append(f"{where} has no Next")
        else:
            _check_target(label, f"Choices[{i}].Next", rule["Next"], states, problems)
        _check_rule(where, rule, problems, top=True)
    if "Default" in state:
        _check_target(label, "Default", state["Default"], states, problems)


def _check_rule(where: str, rule: dict[str, Any], problems: list[str], *, top: bool) -> None:
    if not top and "Next" in rule:
        problems.append(f"{where}: a nested rule cannot have Next")
    if "Condition" in rule:  # JSONata: an expression string, nothing more to check statically.
        return
    combinators = [key for key in _RULE_COMBINATORS if key in rule]
    comparisons = [key for key in rule if key in _COMPARISONS]
    if len(combinators) + len(comparisons) != 1:
        problems.append(f"{where}: needs exactly one comparison or And/Or/Not, found {combinators + comparisons}")
        return
    if combinators:
        nested = rule[combinators[0]]
        items = [nested] if combinators[0] == "Not" else nested
        if not isinstance(items, list) or not items or not all(isinstance(item, dict) for item in items):
            problems.append(f"{where}: {combinators[0]} must hold rule objects")
            return
        for j, item in enumerate(items):
            _check_rule(f"{where}.{combinators[0]}[{j}]", item, problems, top=False)
        return
    op = comparisons[0]
    value = rule[op]
    if not _is_path(rule.get("Variable")):
        problems.append(f"{where}: Variable must be a JSONPath string")
    if op in _PATH_OPS:
        ok = _is_path(value)
    elif op in _NUMERIC_OPS:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif op in _STRING_OPS:
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, bool)
    if not ok:
        problems.append(f"{where}: {op} has a value of the wrong type: {value!r}")


def _check_wait(label: str, state: dict[str, Any], problems: list[str]) -> None:
    given = [key for key in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if key in state]
    if len(given) != 1:
        problems.append(f"{label}: a Wait needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath")
    if "Seconds" in state and not _is_int(state["Seconds"], minimum=0):
        problems.append(f"{label}: Seconds must be a non-negative integer, got {state['Seconds']!r}")


def _check_retry(label: str, retry: object, problems: list[str]) -> None:
    if not isinstance(retry, list):
        problems.append(f"{label}: Retry must be a list")
        return
    for i, retrier in enumerate(retry):
        where = f"{label}: Retry[{i}]"
        if not isinstance(retrier, dict):
            problems.append(f"{where} must be an object")
            continue
        _check_error_equals(where, retrier, last=i == len(retry) - 1, problems=problems)
        for field, minimum in _RETRIER_INTS.items():
            if field in retrier and not _is_int(retrier[field], minimum=minimum):
                problems.append(f"{where}: {field} must be an integer >= {minimum}, got {retrier[field]!r}")
        rate = retrier.get("BackoffRate", 1.0)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or rate < 1.0:
            problems.append(f"{where}: BackoffRate must be a number >= 1.0, got {rate!r}")
        if "JitterStrategy" in retrier and retrier["JitterStrategy"] not in _JITTER:
            problems.append(f"{where}: JitterStrategy must be FULL or NONE, got {retrier['JitterStrategy']!r}")


def _check_catch(label: str, catch: object, states: dict[str, Any], problems: list[str]) -> None:
    if not isinstance(catch, list):
        problems.append(f"{label}: Catch must be a list")
        return
    for i, catcher in enumerate(catch):
        where = f"{label}: Catch[{i}]"
        if not isinstance(catcher, dict):
            problems.append(f"{where} must be an object")
            continue
        _check_error_equals(where, catcher, last=i == len(catch) - 1, problems=problems)
        if "Next" not in catcher:
            problems.append(f"{where} has no Next")
        else:
            _check_target(label, f"Catch[{i}].Next", catcher["Next"], states, problems)
        if "ResultPath" in catcher and catcher["ResultPath"] is not None and not _is_path(catcher["ResultPath"]):
            problems.append(f"{where}: ResultPath must be a JSONPath string or null")


def _check_error_equals(where: str, entry: dict[str, Any], *, last: bool, problems: list[str]) -> None:
    errors = entry.get("ErrorEquals")
    if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
        problems.append(f"{where}: ErrorEquals must be a non-empty list of error names")
    elif "States.ALL" in errors and (len(errors) > 1 or not last):
        problems.append(f"{where}: States.ALL must appear alone and in the last entry")


def _check_payload(label: str, field: str, payload: object, problems: list[str]) -> None:
    """Keys ending in ``.$`` take their value from a path or an intrinsic: it must be a string."""
    if isinstance(payload, dict):
        for key, value in payload.items():
            where = f"{field}.{key}"
            if key.endswith(".$") and not _is_path_or_intrinsic(value):
                problems.append(f"{label}: {where} must be a JSONPath or intrinsic function string, got {value!r}")
            else:
                _check_payload(label, where, value, problems)
    elif isinstance(payload, list):
        for i, item in enumerate(payload):
            _check_payload(label, f"{field}[{i}]", item, problems)


def _check_graph(start: str, states: dict[str, Any], prefix: str, problems: list[str]) -> None:
    normal: dict[str, set[str]] = {}
    errors: dict[str, set[str]] = {}
    for name, state in states.items():
        normal[name], errors[name] = _edges(state, states)

    reachable = _closure({start}, lambda n: normal[n] | errors[n])
    problems.extend(f"{prefix}{name}: unreachable from StartAt" for name in states if name not in reachable)

    terminal = {name for name, state in states.items() if _is_terminal(state)}
    ends_normally = _backward(terminal, normal)
    ends_somehow = _backward(terminal, {n: normal[n] | errors[n] for n in states})
    for name in states:
        if name not in reachable or name in ends_normally:
            continue
        if name in ends_somehow:
            problems.append(f"{prefix}{name}: every normal continuation loops forever; only an error can end it")
        else:
            problems.append(f"{prefix}{name}: no path to a terminal state (infinite loop)")


def _edges(state: object, states: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Valid transition targets of a state: (Next/Default/Choices, Catch)."""
    if not isinstance(state, dict):
        return set(), set()
    normal = [state.get("Next"), state.get("Default")]
    choices = state.get("Choices")
    if isinstance(choices, list):
        normal += [rule.get("Next") for rule in choices if isinstance(rule, dict)]
    catch = state.get("Catch")
    caught = [c.get("Next") for c in catch if isinstance(c, dict)] if isinstance(catch, list) else []
    return {t for t in normal if isinstance(t, str) and t in states}, {
        t for t in caught if isinstance(t, str) and t in states
    }


def _is_terminal(state: object) -> bool:
    return isinstance(state, dict) and (state.get("Type") in _TERMINAL_TYPES or state.get("End") is True)


def _closure(seeds: set[str], successors: Callable[[str], set[str]]) -> set[str]:
    seen = set(seeds)
    todo = list(seeds)
    while todo:
        for nxt in successors(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _backward(targets: set[str], graph: dict[str, set[str]]) -> set[str]:
    """States from which some path in ``graph`` reaches one of ``targets``."""
    preds: dict[str, set[str]] = {name: set() for name in graph}
    for name, succ in graph.items():
        for nxt in succ:
            preds[nxt].add(name)
    return _closure(targets, lambda n: preds[n])


def _is_int(value: object, *, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_path(value: object) -> bool:
    return isinstance(value, str) and value.startswith("$")


def _is_path_or_intrinsic(value: object) -> bool:
    return _is_path(value) or (isinstance(value, str) and value.startswith("States.") and value.endswith(")"))


# --- command line -------------------------------------------------------------------------------


def check_file(path: Path, given: Mapping[str, object] | None = None) -> tuple[list[str], int]:
    """Problems of one ASL file (placeholders replaced by ``given`` values, the rest by dummies) and its number of
    states."""
    text = dummy_substitute(path.read_text(encoding="utf-8"), given)
    try:
        definition = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"(definition): not valid JSON after substituting placeholders: {exc}"], 0
    leftover = sorted(set(re.findall(r"\$\{[^}]*\}", text)))
    problems = [f"(definition): malformed placeholder {item}" for item in leftover]
    if not isinstance(definition, dict):
        return [*problems, "(definition): the document must be a JSON object"], 0
    return problems + check(definition), count_states(definition)


def main(argv: list[str] | None = None) -> int:
    """Check each file named on the command line; exit status 1 if any has a problem."""
    args = list(sys.argv[1:] if argv is None else argv)
    given: dict[str, object] = {}
    while len(args) >= 2 and args[0] == "--set" and "=" in args[1]:
        name, _, value = args[1].partition("=")
        given[name] = value
        del args[:2]
    if not args or args[0].startswith("--"):
        print("usage: python -m infra.asl_check [--set Name=Value]... FILE...", file=sys.stderr)  # noqa: T201
        return 2
    failed = False
    for arg in args:
        path = Path(arg)
        try:
            problems, count = check_file(path, given)
        except OSError as exc:
            problems, count = [f"(definition): cannot read: {exc.strerror}"], 0
        for problem in problems:
            print(f"{path}: {problem}")  # noqa: T201
        if problems:
            failed = True
        else:
            print(f"ok: {count} states in {path}")  # noqa: T201
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
