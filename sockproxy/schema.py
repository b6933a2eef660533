"""The JSON Schema of policy files, generated from the check registry.

``policies/policy.schema.json`` is this output (a test keeps them equal),
for editors that validate YAML against a schema.
"""

from __future__ import annotations

from typing import Any

from sockproxy.checks import REGISTRY

_STRINGS = {"type": "array", "items": {"type": "string"}}
_MODE = {"enum": ["enforce", "warn", "off"]}


def policy_schema() -> dict[str, Any]:
    rules = []
    for kind in sorted(REGISTRY.values(), key=lambda k: k.name):
        properties: dict[str, Any] = {
            "id": {"type": "string", "description": "stable rule id, shown in refusals"},
            "check": {"const": kind.name},
            "mode": _MODE,
            "message": {"type": "string"},
        }
        for name, param in kind.params.items():
            schema = {"type": "boolean"} if param.kind == "bool" else dict(_STRINGS)
            properties[name.replace("_", "-")] = {**schema, "description": param.help}
        rules.append(
            {
                "description": kind.help,
                "type": "object",
                "required": ["id", "check"],
                "additionalProperties": False,
                "properties": properties,
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "sockproxy policy",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "extends": {"type": "string", "description": "policy file this one builds on"},
            "all-checks": {**_MODE, "description": "mode for every check, inherited ones too"},
            "allow": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"sections": _STRINGS, "operations": _STRINGS},
            },
            "deny": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"operations": _STRINGS},
            },
            "checks": {"type": "array", "items": {"oneOf": rules}},
            "isolation": {
                "type": "boolean",
                "description": "clients see and touch only the containers, volumes, networks"
                " and execs they created",
            },
            "nested-socket": {
                "type": "string",
                "description": "rewrite engine-socket binds to a guarded sockproxy socket"
                " applying this policy ('same') or the policy file named",
            },
        },
    }
