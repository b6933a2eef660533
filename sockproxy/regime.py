"""What is in force: the configuration and every policy it names, loaded
and validated together, swapped whole on reload.

A connection asks the regime in force which policy applies to its client
(``select``); a reload builds a new regime from the files and only replaces
the running one if every file is valid, so a typo never weakens (or
breaks) what runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sockproxy.checks import Context
from sockproxy.config import Config
from sockproxy.identity import Identity
from sockproxy.policy import PERMISSIVE, SAME, Policy, PolicyError, load_policy

BUILTIN_PERMISSIVE = "builtin:permissive"  # a policies entry for the built-in policy


@dataclass(frozen=True, slots=True)
class Regime:
    config: Config
    policies: Mapping[str, Policy]  # by name; nested-socket policies by file path too
    generation: int = 0

    def select(self, who: Identity) -> tuple[Policy | None, Identity]:
        name, who = self.config.select(who)
        return (self.policies.get(name) if name is not None else None), who

    def nested(self, policy: Policy) -> tuple[str, Policy] | None:
        """The policy a nested socket created under ``policy`` applies, and
        the key it is found under again after a reload."""
        if policy.nested_policy is None:
            return None
        if policy.nested_policy == SAME:
            for key, candidate in self.policies.items():
                if candidate is policy:
                    return key, policy
            return None
        found = self.policies.get(policy.nested_policy)
        return (policy.nested_policy, found) if found is not None else None

    @property
    def files(self) -> tuple[str, ...]:
        """Every file this regime was built from, to watch for changes."""
        files = [self.config.source] if self.config.source else []
        for policy in self.policies.values():
            files.extend(policy.files)
        return tuple(dict.fromkeys(os.path.abspath(f) for f in files))


def single(policy: Policy) -> Regime:
    """A regime applying one policy to every client (tests, simple setups)."""
    config = Config(listeners=(), policies={}, default_policy="main")
    return Regime(config, MappingProxyType({"main": policy}))


def build_regime(config: Config, context: Context, generation: int = 0) -> Regime:
    """Load every policy the configuration names (and the stricter policies
    their nested sockets apply); raise PolicyError with every error found."""
    policies: dict[str, Policy] = {}
    errors: list[str] = []
    for name, path in config.policies.items():
        if path == BUILTIN_PERMISSIVE:
            policies[name] = PERMISSIVE
            continue
        try:
            policies[name] = load_policy(path, context)
        except PolicyError as exc:
            errors.extend(exc.errors)
    pending = list(policies.values())
    while pending:  # a nested policy may name a stricter one for its own nested sockets
        nested = pending.pop().nested_policy
        if nested is not None and nested != SAME and nested not in policies:
            try:
                policies[nested] = load_policy(nested, context)
                pending.append(policies[nested])
            except PolicyError as exc:
                errors.extend(exc.errors)
    if errors:
        raise PolicyError(errors)
    return Regime(config, MappingProxyType(policies), generation)
