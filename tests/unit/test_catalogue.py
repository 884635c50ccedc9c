"""`docs/operations.md` names every log event and every metric of the code, and nothing else."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from prometheus_client import REGISTRY

import adapter.ops.metrics  # noqa: F401 - registers the metrics

ROOT = Path(__file__).resolve().parents[2]
LEVELS = {"debug", "info", "warning", "error", "critical", "exception"}
# Functions that take an event name as an argument and log it: (function, argument index).
PASSED_ON = {"_settle_quietly": 1}


def documented(section: str) -> set[str]:
    """The backticked names in the first column of the tables under `## {section}`."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def _is_logger(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "log"
    return isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get_logger"


def _names(node: ast.expr) -> list[str] | None:
    """The event names an argument can be: a string, either string of `a if c else b`, or
    an f-string as a pattern (`enrollment.{result}` becomes `enrollment\\.[a-z_]+`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [re.escape(node.value)]
    if isinstance(node, ast.IfExp):
        body, orelse = _names(node.body), _names(node.orelse)
        return None if body is None or orelse is None else body + orelse
    if isinstance(node, ast.JoinedStr):
        return [
            "".join(
                re.escape(part.value) if isinstance(part, ast.Constant) else "[a-z_]+"
                for part in node.values
            )
        ]
    return None


def logged_events() -> tuple[set[str], list[str]]:
    """(the event names the code logs, as patterns; log calls whose name is not found)."""
    patterns: set[str] = set()
    unknown: list[str] = []
    for path in sorted((ROOT / "adapter").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = getattr(func, "attr", getattr(func, "id", None))
            if name in PASSED_ON and len(node.args) > PASSED_ON[name]:
                found = _names(node.args[PASSED_ON[name]])
            elif isinstance(func, ast.Attribute) and func.attr in LEVELS and _is_logger(func.value):
                argument = node.args[0]
                if isinstance(argument, ast.Name) and argument.id == "event":
                    continue  # passed on: the callers' names are collected above
                found = _names(argument)
            else:
                continue
            if found is None:
                unknown.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            else:
                patterns.update(found)
    return patterns, unknown


def test_every_log_event_of_the_code_is_documented_and_every_documented_one_logged() -> None:
    """Each event name the adapter logs is in the catalogue's log table, and each name in
    the table is one the adapter logs."""
    patterns, unknown = logged_events()
    assert unknown == [], f"log calls whose event name this test cannot read: {unknown}"
    events = documented("Log events")
    assert len(patterns) > 40
    missing = [p for p in patterns if not any(re.fullmatch(p, event) for event in events)]
    assert missing == [], f"not in docs/operations.md: {missing}"
    extra = [e for e in events if not any(re.fullmatch(p, e) for p in patterns)]
    assert extra == [], f"in docs/operations.md but never logged: {extra}"


def test_every_metric_is_documented_and_every_documented_one_exists() -> None:
    """Each `vhs_sync_*` metric, as Prometheus shows it, is in the catalogue's metric table,
    and each name in the table is a metric."""
    shown = set()
    for family in REGISTRY.collect():
        if family.name.startswith("vhs_sync_"):
            suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
            shown.add(family.name + suffix)
    documented_metrics = {name for name in documented("Metrics") if name.startswith("vhs_sync_")}
    assert shown == documented_metrics
