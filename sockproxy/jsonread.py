"""Normalise stage, first step: a request body read as JSON the way the engines read it.

In: a request body (bytes). Out: a ``JsonValue`` tree whose objects keep
their keys as written, in order, duplicates included, and accessors that
look a struct field up the way the engines do. Refused with a ``400``:

* ``InvalidBody``: not one JSON text as the engines accept it (syntax,
  trailing data, NaN/Infinity, a byte-order mark, numbers out of range,
  nesting deeper than ``MAX_DEPTH``), or a field of a type the engine would
  refuse to decode (Go refuses a string where it expects a bool);
* ``AmbiguousBody``: a body sockproxy and an engine could read differently:
  invalid UTF-8 or lone surrogate escapes (which Go turns into U+FFFD), a
  struct field given twice in any spelling, a key that matches a field only
  under one engine's Unicode case rules, a map key given twice.

How the engines read a body (each rule below cites where):

* Docker (moby) decodes with Go's ``encoding/json``. ``decode.go`` ``object()``
  matches a key to a struct field exactly, else case-insensitively with
  Unicode simple folding (``fold.go``: ``foldName``/``foldRune`` since Go 1.21,
  ``equalFoldRight`` before): the long s (U+017F) matches ``s`` and the Kelvin
  sign (U+212A) matches ``k``. A repeated key overwrites the earlier value (an
  object merges into it); map keys are kept as written; ``unquote`` replaces
  invalid UTF-8 and lone surrogate escapes with U+FFFD.
* Podman's compat and libpod handlers decode with json-iterator
  (``ConfigCompatibleWithStandardLibrary``). ``reflect_struct_decoder.go``
  ``decodeOneField`` tries the key as written, then ``strings.ToLower(key)``,
  which lowers the Kelvin sign to ``k`` and the dotted capital I (U+0130) to
  ``i`` but leaves the long s alone. Structs whose field names are all lower case (libpod's ``json``
  tags) and at most ten take a faster path that matches a key by hash only
  (``iter_object.go`` ``readFieldHash`` against ``calcHash``: FNV-1a, 64-bit,
  of the key lower-cased in ASCII), so a different key with the same hash is
  read as that field.

sockproxy never picks one of these readings: a lookup that any of them could
answer differently from a plain ASCII case-insensitive match is refused.
"""

from __future__ import annotations

import dataclasses
import json
import json.scanner
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias

from sockproxy.errors import ProxyError

MAX_DEPTH = 64  # deeper nesting -> InvalidBody; the engines' own bodies nest a few levels

# Longest number literal read. Python's int() refuses more than 4300 digits by
# default (and is quadratic below that); no Go numeric type holds a longer one.
_MAX_NUMBER_CHARS = 4300

# A message quotes at most this much of a key the client wrote.
_QUOTE_CHARS = 64


class InvalidBody(ProxyError):
    """Not JSON as the engines accept it, or a field the engine would refuse to decode."""

    status = 400


class AmbiguousBody(ProxyError):
    """The body could be read differently by an engine than by sockproxy."""

    status = 400


@dataclass(frozen=True, slots=True)
class JsonObject:
    """A JSON object with its keys as written, in order, duplicates included.

    ``field`` and ``has`` read a struct field (case-insensitive, refusing every
    spelling an engine could read differently); ``entries`` reads a map
    (``map[string]T``: keys as written, case-sensitive).
    """

    pairs: tuple[tuple[str, JsonValue], ...]
    # Built on first lookup: folded key -> indexes into pairs, and
    # json-iterator key hash -> indexes into pairs.
    _by_fold: dict[str, list[int]] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )
    _by_hash: dict[int, list[int]] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    def field(self, name: str) -> JsonValue:
        """The value of struct field ``name``; ``None`` when absent or null.

        ``name`` is the engine's own spelling (ASCII): Docker's ``Privileged``,
        libpod's ``privileged``. An all-lower-case name is also checked against
        json-iterator's hash matching, which only libpod's lower-case structs use.
        """
        return self._lookup(name, name)

    def has(self, name: str) -> bool:
        """Whether struct field ``name`` is given (in any case), with ``field``'s refusals."""
        return self._find(name, name) is not None

    def entries(self) -> tuple[tuple[str, JsonValue], ...]:
        """The pairs of a map-typed field; ``AmbiguousBody`` on an exactly repeated key."""
        return self._entries("map")

    def unknown_keys(self, known: Iterable[str]) -> tuple[str, ...]:
        """Keys that none of the field names ``known`` would read, for notes and diagnostics."""
        folded = {_fold_name(name) for name in known}
        return tuple(key for key, _ in self.pairs if _fold_key(key) not in folded)

    def replace(self, name: str, value: JsonValue) -> JsonObject:
        """A copy with struct field ``name`` set to ``value`` (where the client
        spelled it, else added in the engine's spelling)."""
        index = self._find(name, name)
        if index is None:
            return JsonObject((*self.pairs, (name, value)))
        pairs = list(self.pairs)
        pairs[index] = (pairs[index][0], value)
        return JsonObject(tuple(pairs))

    def _lookup(self, name: str, origin: str) -> JsonValue:
        index = self._find(name, origin)
        return None if index is None else self.pairs[index][1]

    def _find(self, name: str, origin: str) -> int | None:
        folded = _fold_name(name)
        found = self._fold_index().get(folded, [])
        if len(found) > 1:
            # Go and json-iterator keep the last one (Go merges objects); refuse
            # rather than pick, even when the values are equal.
            keys = ", ".join(_quote(self.pairs[i][0]) for i in found)
            raise AmbiguousBody(
                f"ambiguous JSON body: {origin} is given {len(found)} times ({keys})"
            )
        if found and not self.pairs[found[0]][0].isascii():
            raise AmbiguousBody(
                f"ambiguous JSON body: key {_quote(self.pairs[found[0]][0])} spells {origin} with "
                "a non-ASCII letter that only some engines read as that field"
            )
        if folded == name:
            # Only all-lower-case names can reach json-iterator's hash path: a name
            # with an upper-case letter is also registered lower-cased, the two
            # hashes collide and the struct gets the general decoder.
            for i in self._hash_index().get(_jsoniter_field_hash(folded), []):
                if i not in found:
                    raise AmbiguousBody(
                        f"ambiguous JSON body: key {_quote(self.pairs[i][0])} would be read as "
                        f"{origin} by Podman (json-iterator matches it by hash)"
                    )
        return found[0] if found else None

    def _entries(self, origin: str) -> tuple[tuple[str, JsonValue], ...]:
        seen: set[str] = set()
        for key, _ in self.pairs:
            if key in seen:
                raise AmbiguousBody(f"ambiguous JSON body: {origin} gives key {_quote(key)} twice")
            seen.add(key)
        return self.pairs

    def _fold_index(self) -> dict[str, list[int]]:
        index = self._by_fold
        if index is None:
            index = {}
            for i, (key, _) in enumerate(self.pairs):
                index.setdefault(_fold_key(key), []).append(i)
            object.__setattr__(self, "_by_fold", index)
        return index

    def _hash_index(self) -> dict[int, list[int]]:
        index = self._by_hash
        if index is None:
            index = {}
            for i, (key, _) in enumerate(self.pairs):
                for key_hash in _jsoniter_key_hashes(key):
                    index.setdefault(key_hash, []).append(i)
            object.__setattr__(self, "_by_hash", index)
        return index


JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | JsonObject | None

_EMPTY = JsonObject(())


# --- field-name matching ---------------------------------------------------

# Non-ASCII letters that some engine matches to an ASCII letter of a field
# name: Go's Unicode simple folding (long s U+017F ~ s, Kelvin sign U+212A ~ k),
# json-iterator's strings.ToLower (Kelvin sign -> k, U+0130 -> i), and the
# dotless i U+0131, whose upper case is I, for any comparison that upper-cases.
# These are all the non-ASCII runes whose Go SimpleFold orbit, ToLower or
# ToUpper holds an ASCII letter.
_LOOKALIKES = {"\u017f": "s", "\u212a": "k", "\u0130": "i", "\u0131": "i"}
_ASCII_LOWER = str.maketrans({chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)})
_FOLD = str.maketrans({chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)} | _LOOKALIKES)


def _fold_key(key: str) -> str:
    # str.lower() is the ASCII fold on an ASCII string, and much faster than translate().
    return key.lower() if key.isascii() else key.translate(_FOLD)


def _fold_name(name: str) -> str:
    if not name.isascii():
        raise ValueError(f"struct field names are ASCII: {name!r}")
    return name.lower()


_FNV_OFFSET = 0x811C9DC5  # json-iterator seeds its 64-bit FNV-1a with the 32-bit offset basis
_FNV_PRIME = 0x1000193
_MASK64 = (1 << 64) - 1


def _fnv(codes: Iterable[int]) -> int:
    h = _FNV_OFFSET
    for code in codes:
        h = ((h ^ code) * _FNV_PRIME) & _MASK64
    return h


def _jsoniter_field_hash(lower_name: str) -> int:
    # calcHash(strings.ToLower(name)): over the bytes of the lower-cased name.
    return _fnv(lower_name.encode())


def _jsoniter_key_hashes(key: str) -> set[int]:
    # readFieldHash lower-cases ASCII letters and hashes the raw bytes of a key
    # written without escapes, but the runes of one written with escapes; we
    # no longer know which, so a key may have either hash.
    lowered = key.lower() if key.isascii() else key.translate(_ASCII_LOWER)
    hashes = {_fnv(lowered.encode())}
    if not key.isascii():
        hashes.add(_fnv(map(ord, lowered)))
    return hashes


def _quote(key: str) -> str:
    text = json.dumps(key[:_QUOTE_CHARS])  # ASCII only: non-ASCII letters show as \uXXXX
    return text if len(key) <= _QUOTE_CHARS else text[:-1] + '..."'


# --- decoding ----------------------------------------------------------------

# UTF-8, UTF-16 and UTF-32 byte-order marks: the engines read UTF-8 without one.
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_STRUCTURE = re.compile(r'[\[\]{}"\\]')
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode(body: bytes) -> JsonValue:
    """Decode one JSON value from ``body`` strictly, or refuse it.

    UTF-8 only (no byte-order mark, no UTF-16/32 detection); invalid UTF-8
    and lone surrogate escapes are ``AmbiguousBody`` (Go would read U+FFFD);
    exactly one value with optional surrounding whitespace; no NaN or
    Infinity; numbers within float64 range and at most 4300 characters;
    nesting at most ``MAX_DEPTH`` deep. Objects become ``JsonObject``.
    """
    if not body:
        raise InvalidBody("invalid JSON body: the body is empty")
    if body.startswith(_BOMS):
        raise InvalidBody("invalid JSON body: it starts with a byte-order mark; JSON is UTF-8")
    try:
        text = body.decode("utf-8")  # strict: no overlong forms, no encoded surrogates
    except UnicodeDecodeError as exc:
        raise AmbiguousBody(
            f"ambiguous JSON body: invalid UTF-8 at byte {exc.start}"
            " (the engines would read U+FFFD)"
        ) from None
    _check_depth(text)
    try:
        value: JsonValue = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidBody(
            f"invalid JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:  # _check_depth bounds nesting; this is a second line
        raise InvalidBody(f"invalid JSON body: nested deeper than {MAX_DEPTH}") from None
    except ValueError as exc:  # int() below sys.get_int_max_str_digits()
        raise InvalidBody(f"invalid JSON body: {exc}") from None
    if _ESCAPED_SURROGATE.search(text) and _has_surrogate(value):
        # Python keeps an unpaired \ud800 as is; Go's unquote turns it into U+FFFD.
        raise AmbiguousBody(
            "ambiguous JSON body: a string has a lone surrogate escape"
            " (the engines would read U+FFFD)"
        )
    return value


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before the recursive C decoder sees it."""
    if text.count("{") + text.count("[") <= MAX_DEPTH:
        return  # cannot nest deeper than it has openers
    depth = 0
    in_string = False
    escaped = -1  # index of the character a backslash escapes
    for match in _STRUCTURE.finditer(text):
        char = match.group()
        if in_string:
            if match.start() == escaped:
                continue
            if char == "\\":
                escaped = match.start() + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidBody(f"invalid JSON body: nested deeper than {MAX_DEPTH}")
        elif char in "]}":
            depth -= 1  # a stray backslash or closer is left to the decoder to refuse


def _has_surrogate(value: JsonValue) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    if isinstance(value, JsonObject):
        return any(
            _SURROGATE.search(key) is not None or _has_surrogate(item) for key, item in value.pairs
        )
    return False


def _make_object(pairs: list[tuple[str, Any]]) -> JsonObject:
    return JsonObject(tuple(pairs))


def _parse_int(literal: str) -> int:
    if len(literal) > _MAX_NUMBER_CHARS:
        raise InvalidBody(f"invalid JSON body: a number longer than {_MAX_NUMBER_CHARS} characters")
    return int(literal)


def _parse_float(literal: str) -> float:
    if len(literal) > _MAX_NUMBER_CHARS:
        raise InvalidBody(f"invalid JSON body: a number longer than {_MAX_NUMBER_CHARS} characters")
    value = float(literal)
    if math.isinf(value):
        # Go's strconv.ParseFloat reports ErrRange; Python would read infinity.
        raise InvalidBody("invalid JSON body: a number is out of range for a 64-bit float")
    return value


def _refuse_constant(literal: str) -> NoReturn:
    raise InvalidBody(f"invalid JSON body: {literal} is not JSON")


_DECODER = json.JSONDecoder(
    object_pairs_hook=_make_object,
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_refuse_constant,
    strict=True,  # control characters in strings are refused, as Go does
)
if json.scanner.make_scanner.__module__ != "_json":  # pragma: no cover
    # The pure-Python scanner reads "\u" escapes with int(x, 16), which also
    # accepts " 1a", "+1a" and "1_a": only the C scanner is strict.
    raise ImportError("sockproxy.jsonread needs CPython's _json accelerator")


# --- typed accessors -----------------------------------------------------------
#
# ``origin`` is the engine's spelling of the field path ("HostConfig.Privileged")
# for messages. ``obj`` may be None (an absent parent): the zero value comes back.
# A type mismatch is InvalidBody: the engine itself would refuse to decode it.


def as_object(value: JsonValue, origin: str) -> JsonObject:
    """``value`` as an object (a body's top level); anything else is InvalidBody."""
    if isinstance(value, JsonObject):
        return value
    raise _mismatch(origin, "an object", value)


def get_obj(obj: JsonObject | None, name: str, origin: str) -> JsonObject | None:
    """A struct- or map-typed field; absent or null -> None."""
    value = _value(obj, name, origin)
    if value is None or isinstance(value, JsonObject):
        return value
    raise _mismatch(origin, "an object", value)


def get_bool(obj: JsonObject | None, name: str, origin: str) -> bool:
    """A bool field; absent or null -> False."""
    value = _value(obj, name, origin)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise _mismatch(origin, "a boolean", value)


def get_str(obj: JsonObject | None, name: str, origin: str) -> str:
    """A string field; absent or null -> ""."""
    value = _value(obj, name, origin)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise _mismatch(origin, "a string", value)


_INT_MIN = -(1 << 63)  # int64
_INT_MAX = (1 << 64) - 1  # uint64


def get_int(obj: JsonObject | None, name: str, origin: str) -> int:
    """An integer field; absent or null -> 0.

    A number written with a fraction or an exponent is refused even when it is
    whole ("1.0", "1e3"): Go parses integer fields with strconv.ParseInt/ParseUint,
    which refuse both. Values outside int64..uint64 are refused too.
    """
    value = _value(obj, name, origin)
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        if _INT_MIN <= value <= _INT_MAX:
            return value
        raise InvalidBody(f"invalid JSON body: {origin} is out of range for a 64-bit integer")
    if isinstance(value, float):
        raise InvalidBody(
            f"invalid JSON body: {origin} must be an integer,"
            " not a number with a fraction or exponent"
        )
    raise _mismatch(origin, "an integer", value)


def get_list(obj: JsonObject | None, name: str, origin: str) -> tuple[JsonValue, ...]:
    """An array field; absent or null -> ()."""
    value = _value(obj, name, origin)
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(value)
    raise _mismatch(origin, "an array", value)


def get_str_list(obj: JsonObject | None, name: str, origin: str) -> tuple[str, ...]:
    """A ``[]string`` field; absent or null -> (). A lone string is refused, as Go does.

    A null item reads as "" (Go leaves the zero string in its place).
    """
    return _strings(get_list(obj, name, origin), origin)


def get_str_slice(obj: JsonObject | None, name: str, origin: str) -> tuple[str, ...]:
    """A ``strslice.StrSlice`` field (``Cmd``, ``Entrypoint``, ``HostConfig.CapAdd``,
    ``HostConfig.CapDrop``): an array of strings, or one string read as a one-item list
    (moby api/types/strslice ``UnmarshalJSON``); absent or null -> ().
    """
    value = _value(obj, name, origin)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return _strings(tuple(value), origin)
    raise _mismatch(origin, "a string or an array of strings", value)


def get_str_map(obj: JsonObject | None, name: str, origin: str) -> tuple[tuple[str, str], ...]:
    """A ``map[string]string`` field (``Labels``, ``HostConfig.Sysctls``...): keys as
    written, case-sensitive; a repeated key is AmbiguousBody; a null value reads as "";
    absent or null -> ().
    """
    mapping = get_obj(obj, name, origin)
    if mapping is None:
        return ()
    result = []
    for key, value in mapping._entries(origin):
        if value is None:
            value = ""
        elif not isinstance(value, str):
            raise _mismatch(f"{origin}[{_quote(key)}]", "a string", value)
        result.append((key, value))
    return tuple(result)


def get_obj_list(obj: JsonObject | None, name: str, origin: str) -> tuple[JsonObject, ...]:
    """An array-of-structs field; a null item reads as an empty object (Go's zero
    struct); absent or null -> ().
    """
    result = []
    for i, item in enumerate(get_list(obj, name, origin)):
        if item is None:
            item = _EMPTY
        elif not isinstance(item, JsonObject):
            raise _mismatch(f"{origin}[{i}]", "an object", item)
        result.append(item)
    return tuple(result)


def _value(obj: JsonObject | None, name: str, origin: str) -> JsonValue:
    return None if obj is None else obj._lookup(name, origin)


def _strings(items: tuple[JsonValue, ...], origin: str) -> tuple[str, ...]:
    result = []
    for i, item in enumerate(items):
        if item is None:
            item = ""
        elif not isinstance(item, str):
            raise _mismatch(f"{origin}[{i}]", "a string", item)
        result.append(item)
    return tuple(result)


def _mismatch(origin: str, expected: str, value: JsonValue) -> InvalidBody:
    return InvalidBody(f"invalid JSON body: {origin} must be {expected}, not {_kind(value)}")


def _kind(value: JsonValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def encode(value: JsonValue) -> bytes:
    """Serialise a decoded value again (for a body sockproxy rewrote): keys as
    written and in order, numbers as Python read them (exact for integers)."""
    return json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":")).encode()


def _plain(value: JsonValue) -> Any:
    if isinstance(value, JsonObject):
        # In order; a key repeated in an unread map keeps its last value, as Go reads it.
        return {key: _plain(item) for key, item in value.pairs}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
