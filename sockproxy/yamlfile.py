"""YAML files admins edit (policies, the configuration), read with positions.

Every value is taken from the composed node tree, so that an error names
``FILE:LINE:COL``; duplicate keys, wrong types and unknown keys (with a
did-you-mean) are errors, never silently ignored.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml


def compose(path: Path, errors: Errors) -> yaml.Node | None:
    """The file's node tree, or None (with the error recorded)."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except OSError as exc:
        errors.add(None, f"cannot read {errors.what}: {exc.strerror}")
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{mark.line + 1}:{mark.column + 1}" if mark else "1:1"
        errors.items.append(f"{errors.filename}:{where}: invalid YAML: {exc.problem}")
        return None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        errors.add(None, f"invalid YAML: {exc}")
        return None
    if root is None:
        errors.add(None, f"the {errors.what} is empty")
    return root


class Errors:
    def __init__(self, filename: str, what: str = "policy") -> None:
        self.filename = filename
        self.what = what  # "policy" or "configuration", for messages
        self.items: list[str] = []

    def add(self, node: yaml.Node | None, message: str) -> None:
        if node is None:
            self.items.append(f"{self.filename}:1:1: {message}")
        else:
            mark = node.start_mark
            self.items.append(f"{self.filename}:{mark.line + 1}:{mark.column + 1}: {message}")


def mapping(node: yaml.Node, errors: Errors, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping node's entries by key; duplicate and non-string keys are errors."""
    if not isinstance(node, yaml.MappingNode):
        errors.add(node, f"{what} must be a mapping")
        return {}
    entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag != "tag:yaml.org,2002:str":
            errors.add(key, f"{what}: keys must be strings")
            continue
        if key.value in entries:
            errors.add(key, f"{what}: duplicate key {key.value!r}")
            continue
        entries[key.value] = (key, value)
    return entries


def unknown(
    entries: dict[str, tuple[yaml.Node, yaml.Node]], known: set[str], errors: Errors, what: str
) -> None:
    for name, (key, _) in entries.items():
        if name not in known:
            hint = closest(name, known)
            errors.add(
                key,
                f"{what}: unknown key {name!r}" + (f" (did you mean {hint!r}?)" if hint else ""),
            )


def closest(name: str, known: set[str]) -> str | None:
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def string(node: yaml.Node, errors: Errors, what: str) -> str | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
        return str(node.value)
    errors.add(node, f"{what} must be a string")
    return None


def word(node: yaml.Node, errors: Errors, what: str) -> str | None:
    """A scalar as written: YAML 1.1 would read ``off`` as false, but an admin
    writing ``mode: off`` means the word."""
    if isinstance(node, yaml.ScalarNode) and node.tag in (
        "tag:yaml.org,2002:str",
        "tag:yaml.org,2002:bool",
    ):
        return str(node.value)
    errors.add(node, f"{what} must be a word")
    return None


def strings(node: yaml.Node, errors: Errors, what: str) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        errors.add(node, f"{what} must be a list of strings")
        return []
    out = []
    for item in node.value:
        value = string(item, errors, f"{what} item")
        if value is not None:
            out.append(value)
    return out


def boolean(node: yaml.Node, errors: Errors, what: str) -> bool | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
        return bool(yaml.safe_load(node.value))
    errors.add(node, f"{what} must be true or false")
    return None
