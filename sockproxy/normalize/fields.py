"""The fields of one JSON object, read as the engine reads them, each read noted.

A thin layer over ``jsonread``'s accessors: it carries the origin prefix
(``HostConfig.``, ``TaskTemplate.ContainerSpec.Mounts[2].``) so every value
knows its engine spelling, and it records each field that is present so the
normalised ``Request.notes`` can say what was looked at. Type mismatches and
ambiguous spellings are refused by ``jsonread`` (``InvalidBody``,
``AmbiguousBody``).
"""

from __future__ import annotations

import re

from sockproxy import jsonread
from sockproxy.jsonread import InvalidBody, JsonObject, JsonValue

_INDEX = re.compile(r"\[[^\]]*\]")


def strings(value: JsonValue, origin: str) -> tuple[str, ...]:
    """A ``[]string`` value found inside a list or a map (null reads as empty)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidBody(f"invalid JSON body: {origin} must be an array of strings")
    result = []
    for i, item in enumerate(value):
        if item is not None and not isinstance(item, str):
            raise InvalidBody(f"invalid JSON body: {origin}[{i}] must be a string")
        result.append(item or "")
    return tuple(result)


class Notes:
    """Field paths that were present in a body, without list indexes, in order."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, None] = {}

    def add(self, text: str) -> None:
        self._seen.setdefault(_INDEX.sub("", text), None)

    def items(self) -> tuple[str, ...]:
        return tuple(self._seen)


class Fields:
    """Typed reads of one object's fields; an absent object reads as all zero values."""

    __slots__ = ("notes", "obj", "prefix")

    def __init__(self, obj: JsonObject | None, prefix: str, notes: Notes) -> None:
        self.obj = obj
        self.prefix = prefix  # "" at the top level, else "Parent." or "Parent[3]."
        self.notes = notes

    @classmethod
    def top(cls, value: JsonValue, what: str, notes: Notes) -> Fields:
        """The fields of a body's top-level object (``what`` names it in messages)."""
        return cls(jsonread.as_object(value, what), "", notes)

    def origin(self, name: str = "") -> str:
        """The engine's spelling of field ``name`` here (of this object when empty)."""
        return f"{self.prefix}{name}" if name else self.prefix.removesuffix(".")

    def _note(self, name: str, present: object) -> None:
        if present:
            self.notes.add(self.origin(name))

    def present(self, name: str) -> bool:
        """Whether the field is given and not null."""
        return self.obj is not None and self.obj.field(name) is not None

    def note_if_set(self, name: str) -> None:
        """Note a field that no check reads yet, when it holds anything."""
        value = None if self.obj is None else self.obj.field(name)
        self._note(name, value.pairs if isinstance(value, JsonObject) else value)

    def text(self, name: str) -> str:
        value = jsonread.get_str(self.obj, name, self.origin(name))
        self._note(name, value)
        return value

    def flag(self, name: str) -> bool:
        value = jsonread.get_bool(self.obj, name, self.origin(name))
        self._note(name, value)
        return value

    def number(self, name: str) -> int:
        value = jsonread.get_int(self.obj, name, self.origin(name))
        self._note(name, value)
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        value = jsonread.get_str_list(self.obj, name, self.origin(name))
        self._note(name, value)
        return value

    def text_slice(self, name: str) -> tuple[str, ...]:
        """A ``strslice.StrSlice``: a list of strings or one string."""
        value = jsonread.get_str_slice(self.obj, name, self.origin(name))
        self._note(name, value)
        return value

    def text_map(self, name: str) -> tuple[tuple[str, str], ...]:
        value = jsonread.get_str_map(self.obj, name, self.origin(name))
        self._note(name, value)
        return value

    def keys(self, name: str) -> tuple[str, ...]:
        """The keys of a map-typed field (``map[string]struct{}`` such as ``Volumes``)."""
        mapping = jsonread.get_obj(self.obj, name, self.origin(name))
        keys = () if mapping is None else tuple(key for key, _ in mapping.entries())
        self._note(name, keys)
        return keys

    def values(self, name: str) -> tuple[JsonValue, ...]:
        value = jsonread.get_list(self.obj, name, self.origin(name))
        self._note(name, value)
        return value

    def child(self, name: str) -> Fields:
        """A struct-typed field (absent or null: an empty reader)."""
        obj = jsonread.get_obj(self.obj, name, self.origin(name))
        return Fields(obj, f"{self.origin(name)}.", self.notes)

    def children(self, name: str) -> tuple[Fields, ...]:
        """An array-of-structs field, one reader per item."""
        origin = self.origin(name)
        items = jsonread.get_obj_list(self.obj, name, origin)
        self._note(name, items)
        return tuple(Fields(item, f"{origin}[{i}].", self.notes) for i, item in enumerate(items))
