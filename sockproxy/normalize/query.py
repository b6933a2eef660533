"""Query parameters read so that no engine can read them differently.

Docker reads a parameter with ``r.FormValue``: the exact name, first value.
Podman decodes with gorilla/schema, which matches names case-insensitively and
keeps the last value of a repeated one, while its handlers test presence with
``r.URL.Query()["name"]``, exact. So a parameter given twice with different
values, or in another spelling of its name, is refused as ambiguous.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from sockproxy.jsonread import AmbiguousBody


class Query:
    __slots__ = ("_pairs", "_podman_only")

    def __init__(self, raw: str, *, podman_only: bool = False) -> None:
        self._pairs = parse_qsl(raw, keep_blank_values=True)
        # On a libpod-only route no other engine reads the query, and Podman's
        # schema decoder folds case: another spelling is the same parameter.
        self._podman_only = podman_only

    def _values(self, name: str) -> list[str]:
        folded = name.lower()
        values = []
        for key, value in self._pairs:
            if key.lower() != folded:
                continue
            if key != name and not self._podman_only:
                raise AmbiguousBody(
                    f"ambiguous query: parameter {key!r} is {name!r} for Podman only"
                )
            values.append(value)
        return values

    def get(self, name: str) -> str | None:
        """A single-valued parameter; ``None`` when absent."""
        values = self._values(name)
        if not values:
            return None
        if len(set(values)) > 1:
            raise AmbiguousBody(
                f"ambiguous query: parameter {name!r} is given {len(values)} times with "
                "different values (Docker reads the first, Podman the last)"
            )
        return values[0]

    def get_all(self, name: str) -> tuple[str, ...]:
        """A list-valued parameter (repeated on purpose), in order."""
        return tuple(self._values(name))
