"""Body decoding: JSON read as the engines read it, or refused."""

from __future__ import annotations

import contextlib
import json
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockproxy.jsonread import (
    MAX_DEPTH,
    AmbiguousBody,
    InvalidBody,
    JsonObject,
    JsonValue,
    as_object,
    decode,
    get_bool,
    get_int,
    get_list,
    get_obj,
    get_obj_list,
    get_str,
    get_str_list,
    get_str_map,
    get_str_slice,
)

LONG_S = "\u017f"  # LATIN SMALL LETTER LONG S: Go folds it to s
KELVIN = "\u212a"  # KELVIN SIGN: Go folds it to k, json-iterator lowers it to k
DOTTED_I = "\u0130"  # LATIN CAPITAL LETTER I WITH DOT ABOVE: json-iterator lowers it to i
DOTLESS_I = "\u0131"  # LATIN SMALL LETTER DOTLESS I: upper-cases to I


def plain(value: JsonValue) -> Any:
    """A decoded value as json.loads would give it (objects as dicts, last key wins)."""
    if isinstance(value, JsonObject):
        return {key: plain(item) for key, item in value.pairs}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def obj(text: str) -> JsonObject:
    return as_object(decode(text.encode()), "body")


# --- decode: what is accepted ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{}", {}),
        (b" \t\r\n{} \t\r\n", {}),
        (b"[]", []),
        (b"null", None),
        (b"true", True),
        (b"0", 0),
        (b"-0", 0),
        (b"12345678901234567890123", 12345678901234567890123),
        (b"1.5e3", 1500.0),
        (b"1E-400", 0.0),  # underflow is zero for Go's ParseFloat too
        (b'"a\\u00e9\\n\\/"', "a\u00e9\n/"),
        ('"\u00e9\u212a"'.encode(), "\u00e9\u212a"),
        (b'"\\ud83d\\ude00"', "\U0001f600"),  # an escaped surrogate pair is one character
        (b'"\\\\ud800"', "\\ud800"),  # an escaped backslash, then text: no surrogate
        (b'{"a": [1, {"b": null}], "c": "d"}', {"a": [1, {"b": None}], "c": "d"}),
        (b"1" * 4300, int("1" * 4300)),
    ],
)
def test_valid_json_is_decoded(body: bytes, expected: Any) -> None:
    assert plain(decode(body)) == expected


def test_objects_keep_every_key_as_written_in_order() -> None:
    value = decode(b'{"b": 1, "A": 2, "a": 3, "b": 4}')
    assert isinstance(value, JsonObject)
    assert value.pairs == (("b", 1), ("A", 2), ("a", 3), ("b", 4))


def test_ints_stay_ints_and_floats_stay_floats() -> None:
    value = decode(b"[1, 1.0, 1e0]")
    assert value == [1, 1.0, 1.0]
    assert isinstance(value, list)
    assert [type(item) for item in value] == [int, float, float]


def nested(depth: int, opener: str = "[", closer: str = "]") -> bytes:
    return (opener * depth + closer * depth).encode()


def nested_objects(depth: int) -> bytes:
    return ('{"a":' * depth + "null" + "}" * depth).encode()


@pytest.mark.parametrize(
    "body",
    [
        nested(MAX_DEPTH),
        nested_objects(MAX_DEPTH),
        # brackets inside strings (and after escaped quotes) are not nesting
        json.dumps(["[" * 100, '\\"{' * 100, "]" * 100]).encode(),
        (json.dumps({"k": '"[' * 200}) + " ").encode(),
    ],
    ids=["arrays", "objects", "brackets-in-strings", "escaped-quotes"],
)
def test_nesting_up_to_max_depth_is_accepted(body: bytes) -> None:
    decode(body)


# --- decode: what is refused ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", InvalidBody),
        (b" \r\n", InvalidBody),
        (b"{} {}", InvalidBody),  # trailing data (Go's Decoder would read only the first)
        (b"{}x", InvalidBody),
        (b"{}\x00", InvalidBody),
        (b"NaN", InvalidBody),
        (b"[Infinity]", InvalidBody),
        (b'{"a": -Infinity}', InvalidBody),
        (b"1e400", InvalidBody),  # Go: value out of range; Python would read inf
        (b"-1e400", InvalidBody),
        (b"1" * 4301, InvalidBody),  # Python's int() limit, and more than any Go number
        (b"0." + b"1" * 4300, InvalidBody),
        (b"01", InvalidBody),
        (b"+1", InvalidBody),
        (b".5", InvalidBody),
        (b"1.", InvalidBody),
        (b"0x10", InvalidBody),
        (b"{'a': 1}", InvalidBody),
        (b'{"a": 1,}', InvalidBody),
        (b"[1,]", InvalidBody),
        (b'{"a" 1}', InvalidBody),
        (b'{"a": 1} // comment', InvalidBody),
        (b'"\\x41"', InvalidBody),  # not a JSON escape
        (b'"\\u00g0"', InvalidBody),
        (b'"\\u 0a0"', InvalidBody),
        (b'"tab\there"', InvalidBody),  # control characters must be escaped
        (b'"unterminated', InvalidBody),
        (b"\x0b{}", InvalidBody),  # vertical tab is not JSON whitespace
        ("\u00a0{}".encode(), InvalidBody),  # nor is a no-break space
        ("{}\u2028".encode(), InvalidBody),
        (b"\xef\xbb\xbf{}", InvalidBody),  # UTF-8 byte-order mark
        ("{}".encode("utf-16"), InvalidBody),  # UTF-16 with its byte-order mark
        ("{}".encode("utf-16-be"), InvalidBody),  # valid UTF-8 bytes, but NULs
        ('{"a": 1}'.encode("utf-16-le"), InvalidBody),
        ("{}".encode("utf-32"), InvalidBody),
        ("{}".encode("utf-32-be"), InvalidBody),
        (nested(MAX_DEPTH + 1), InvalidBody),
        (nested_objects(MAX_DEPTH + 1), InvalidBody),
        (nested(100_000, "[", ""), InvalidBody),  # deep enough to crash a recursive parser
        (nested(100_000, '{"a":', ""), InvalidBody),
        (b'"\xff"', AmbiguousBody),  # invalid UTF-8: Go reads U+FFFD
        (b'{"Privileged\xff": true}', AmbiguousBody),
        (b'"\xc0\xaf"', AmbiguousBody),  # overlong encoding of "/"
        (b'"\xed\xa0\x80"', AmbiguousBody),  # an encoded surrogate
        (b'"\xf4\x90\x80\x80"', AmbiguousBody),  # above U+10FFFF
        (b'"\xe2\x84"', AmbiguousBody),  # truncated sequence
        (b'"\\ud800"', AmbiguousBody),  # lone surrogate escapes: Go reads U+FFFD
        (b'"\\uDC00"', AmbiguousBody),
        (b'"\\ude00\\ud83d"', AmbiguousBody),  # a pair in the wrong order
        (b'"\\ud83d\\u0041"', AmbiguousBody),
        (b'{"\\ud800": 1}', AmbiguousBody),  # in a key too
        (b'[1, {"a": ["x\\udbff"]}]', AmbiguousBody),
    ],
)
def test_malformed_or_ambiguous_bodies_are_refused(
    body: bytes, error: type[InvalidBody | AmbiguousBody]
) -> None:
    with pytest.raises(error) as caught:
        decode(body)
    assert type(caught.value) is error
    assert caught.value.status == 400


def test_refusal_messages_say_what_is_wrong_without_quoting_the_body() -> None:
    with pytest.raises(InvalidBody, match="nested deeper than 64"):
        decode(nested(MAX_DEPTH + 1))
    with pytest.raises(InvalidBody, match=r"Extra data at line 1 column 4"):
        decode(b"{} {}")
    with pytest.raises(AmbiguousBody, match="invalid UTF-8 at byte 8") as caught:
        decode(b'{"secret\xff": "hunter2"}')
    assert "hunter2" not in caught.value.message


# --- struct fields: read as the engines read them ------------------------------------


@pytest.mark.parametrize(
    ("body", "name", "expected"),
    [
        ('{"Privileged": true}', "Privileged", True),
        ('{"privileged": true}', "Privileged", True),  # Go and json-iterator ignore case
        ('{"PRIVILEGED": true}', "Privileged", True),
        ('{"pRiViLeGeD": true}', "privileged", True),
        ('{"\\u0050rivileged": true}', "Privileged", True),  # escapes are decoded first
        ('{"Privileged": null}', "Privileged", None),
        ('{"Other": true}', "Privileged", None),
        ("{}", "Privileged", None),
        ('{"Privileged_": true}', "Privileged", None),
        ('{"Privileged ": true}', "Privileged", None),
        ('{"Image": "a", "image2": "b"}', "Image", "a"),
        ('{"nsmode": "host", "value": ""}', "nsmode", "host"),
    ],
)
def test_field_is_found_case_insensitively(body: str, name: str, expected: JsonValue) -> None:
    assert obj(body).field(name) == expected


@pytest.mark.parametrize(
    ("body", "name"),
    [
        # the engines keep the last (Go merges objects): refuse rather than pick
        ('{"Privileged": true, "Privileged": true}', "Privileged"),
        ('{"Privileged": false, "privileged": true}', "Privileged"),
        ('{"privileged": true, "PRIVILEGED": false}', "privileged"),
        ('{"HostConfig": {}, "hostconfig": {"Privileged": true}}', "HostConfig"),
        ('{"Privileged": null, "privileged": null}', "Privileged"),
        ('{"Privileged": 1, "\\u0050rivileged": 1}', "Privileged"),
        # spellings that only some engines read as the field
        (f'{{"Device{LONG_S}": 1}}', "Devices"),  # Go: yes; json-iterator: no
        (f'{{"{LONG_S}ecurityOpt": []}}', "SecurityOpt"),
        (f'{{"Capadd{KELVIN}": 1}}', "CapAddK"),
        (f'{{"{KELVIN}ernelMemory": 1}}', "KernelMemory"),  # both, in their own ways
        (f'{{"Pr{DOTTED_I}vileged": true}}', "Privileged"),  # json-iterator: yes; Go: no
        (f'{{"Pr{DOTLESS_I}vileged": true}}', "Privileged"),  # upper-cases to I
        (f'{{"Privileged": false, "Pr{DOTTED_I}vileged": true}}', "Privileged"),
        ('{"Devices": [], "Device\\u017f": []}', "Devices"),
    ],
)
def test_field_read_differently_by_some_engine_is_ambiguous(body: str, name: str) -> None:
    value = obj(body)
    with pytest.raises(AmbiguousBody):
        value.field(name)
    with pytest.raises(AmbiguousBody):
        value.has(name)


def test_ambiguity_message_names_the_origin_and_the_keys() -> None:
    body = obj('{"HostConfig": {"Privileged": false, "privileged": true}}')
    host_config = get_obj(body, "HostConfig", "HostConfig")
    with pytest.raises(AmbiguousBody) as caught:
        get_bool(host_config, "Privileged", "HostConfig.Privileged")
    assert caught.value.message == (
        'ambiguous JSON body: HostConfig.Privileged is given 2 times ("Privileged", "privileged")'
    )
    with pytest.raises(AmbiguousBody, match=r'key "\\u017fecurityOpt" spells SecurityOpt'):
        obj(f'{{"{LONG_S}ecurityOpt": []}}').field("SecurityOpt")


def test_unrelated_keys_do_not_make_a_field_ambiguous() -> None:
    body = obj(f'{{"Privileged": true, "Image": "x", "Image": "y", "{KELVIN}": 1}}')
    assert body.field("Privileged") is True
    with pytest.raises(AmbiguousBody):
        body.field("Image")
    with pytest.raises(AmbiguousBody):
        body.field("k")


def test_has_tells_given_from_absent_even_for_null() -> None:
    body = obj('{"Cmd": null, "tty": false}')
    assert body.has("Cmd")
    assert body.has("TTY")
    assert not body.has("Entrypoint")


def test_field_names_must_be_ascii() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        obj("{}").field(f"Privi{LONG_S}")


# Two lower-case names with the same json-iterator field hash (FNV-1a, 64-bit,
# offset 0x811c9dc5, prime 0x1000193), found with a collision search and checked
# against a Go re-implementation of calcHash/readFieldHash. Such collisions are
# cheap: this one took about a minute on two cores.
HASH_TWINS = ("zlrpzrzpyhmca", "1zszrdxlehd5d")  # both 0x0162af7513aeec41


def test_key_that_json_iterator_matches_by_hash_is_ambiguous() -> None:
    """Podman decodes small all-lower-case structs by key hash: a colliding key is that field."""
    first, second = HASH_TWINS
    assert first != second
    body = obj(json.dumps({second: "host"}))
    with pytest.raises(AmbiguousBody, match="json-iterator"):
        body.field(first)
    with pytest.raises(AmbiguousBody, match="json-iterator"):
        body.has(first)
    assert obj(json.dumps({second.upper(): 1})).unknown_keys([first]) == (second.upper(),)
    assert obj(json.dumps({first: "host"})).field(first) == "host"


def test_mixed_case_names_skip_the_hash_check() -> None:
    """json-iterator never hash-matches a struct with an upper-case field name."""
    first, second = HASH_TWINS
    body = obj(json.dumps({second: 1}))
    assert body.field(first.capitalize()) is None


# --- maps: keys as written ------------------------------------------------------------


def test_map_entries_keep_case_variants_as_distinct_keys() -> None:
    labels = obj('{"a": "1", "A": "2", "\\u017f": "3", "s": "4"}')
    assert labels.entries() == (("a", "1"), ("A", "2"), (LONG_S, "3"), ("s", "4"))


@pytest.mark.parametrize(
    "body",
    ['{"a": "1", "a": "1"}', '{"a": "1", "b": "2", "a": "3"}', '{"a": "1", "\\u0061": "2"}'],
)
def test_map_with_a_repeated_key_is_ambiguous(body: str) -> None:
    with pytest.raises(AmbiguousBody):
        obj(body).entries()


def test_unknown_keys_lists_keys_no_known_field_reads() -> None:
    body = obj(f'{{"Image": 1, "IMAGE": 2, "Cmd": 3, "Extra": 4, "{KELVIN}ey": 5, "x": 6}}')
    assert body.unknown_keys(["image", "Cmd", "Key"]) == ("Extra", "x")
    assert body.unknown_keys([]) == ("Image", "IMAGE", "Cmd", "Extra", f"{KELVIN}ey", "x")


# --- typed accessors ------------------------------------------------------------------

Accessor = Callable[[JsonObject | None, str, str], object]


@pytest.mark.parametrize(
    ("accessor", "zero"),
    [
        (get_obj, None),
        (get_bool, False),
        (get_str, ""),
        (get_int, 0),
        (get_list, ()),
        (get_str_list, ()),
        (get_str_slice, ()),
        (get_str_map, ()),
        (get_obj_list, ()),
    ],
)
@pytest.mark.parametrize("parent", [None, "{}", '{"F": null}', '{"f": null}'])
def test_absent_parent_field_or_null_gives_the_zero_value(
    accessor: Accessor, zero: object, parent: str | None
) -> None:
    assert accessor(None if parent is None else obj(parent), "F", "X.F") == zero


@pytest.mark.parametrize(
    ("accessor", "body", "expected"),
    [
        (get_bool, '{"f": true}', True),
        (get_bool, '{"f": false}', False),
        (get_str, '{"f": "x"}', "x"),
        (get_int, '{"f": -5}', -5),
        (get_int, '{"f": 18446744073709551615}', 2**64 - 1),  # uint64 max
        (get_int, '{"f": -9223372036854775808}', -(2**63)),  # int64 min
        (get_list, '{"f": [1, "a", null]}', (1, "a", None)),
        (get_str_list, '{"f": ["a", "b"]}', ("a", "b")),
        (get_str_list, '{"f": ["a", null]}', ("a", "")),  # Go leaves the zero string
        (get_str_slice, '{"f": ["a", "b"]}', ("a", "b")),
        (get_str_slice, '{"f": "SYS_ADMIN"}', ("SYS_ADMIN",)),  # strslice.StrSlice
        (get_str_slice, '{"f": ""}', ("",)),
        (
            get_str_map,
            '{"f": {"b": "1", "B": "2", "a": null}}',
            (("b", "1"), ("B", "2"), ("a", "")),
        ),
        (get_obj_list, '{"f": [{"a": 1}, null]}', (JsonObject((("a", 1),)), JsonObject(()))),
    ],
)
def test_typed_accessors_read_their_type(accessor: Accessor, body: str, expected: object) -> None:
    assert accessor(obj(body), "F", "X.F") == expected


def test_get_obj_returns_the_nested_object() -> None:
    body = obj('{"HostConfig": {"Privileged": true}}')
    host_config = get_obj(body, "hostconfig", "HostConfig")
    assert host_config == JsonObject((("Privileged", True),))
    assert get_bool(host_config, "Privileged", "HostConfig.Privileged") is True


@pytest.mark.parametrize(
    ("accessor", "value", "origin"),
    [
        (get_obj, "[]", "HostConfig"),
        (get_obj, '"x"', "HostConfig"),
        (get_bool, '"true"', "HostConfig.Privileged"),  # Go refuses a string for a bool
        (get_bool, "1", "HostConfig.Privileged"),
        (get_bool, "{}", "HostConfig.Privileged"),
        (get_str, "1", "Image"),
        (get_str, "true", "Image"),
        (get_str, '["a"]', "Image"),
        (get_int, "true", "HostConfig.Memory"),  # a bool is not an integer
        (get_int, '"1"', "HostConfig.Memory"),
        (get_int, "1.5", "HostConfig.Memory"),
        (get_int, "1.0", "HostConfig.Memory"),  # Go's ParseInt refuses it too
        (get_int, "1e3", "HostConfig.Memory"),
        (get_int, "18446744073709551616", "HostConfig.Memory"),
        (get_int, "-9223372036854775809", "HostConfig.Memory"),
        (get_list, '"a"', "HostConfig.Devices"),
        (get_list, "{}", "HostConfig.Devices"),
        (get_str_list, '"SYS_ADMIN"', "HostConfig.Dns"),  # Go refuses a string for []string
        (get_str_list, '["a", 1]', "HostConfig.Dns[1]"),
        (get_str_list, '[["a"]]', "HostConfig.Dns[0]"),
        (get_str_slice, "1", "HostConfig.CapAdd"),
        (get_str_slice, '["a", true]', "HostConfig.CapAdd[1]"),
        (get_str_map, '["a=b"]', "Labels"),
        (get_str_map, '{"a": 1}', 'Labels["a"]'),
        (get_str_map, '{"a": ["b"]}', 'Labels["a"]'),
        (get_obj_list, '{"a": 1}', "HostConfig.Mounts"),
        (get_obj_list, '[{}, "x"]', "HostConfig.Mounts[1]"),
    ],
)
def test_type_mismatch_is_invalid_and_names_the_origin(
    accessor: Accessor, value: str, origin: str
) -> None:
    body = obj(f'{{"f": {value}}}')
    with pytest.raises(InvalidBody) as caught:
        accessor(body, "F", origin.split("[")[0])
    assert type(caught.value) is InvalidBody
    assert caught.value.message.startswith(f"invalid JSON body: {origin} ")


def test_map_with_a_repeated_key_is_ambiguous_in_get_str_map() -> None:
    with pytest.raises(AmbiguousBody, match=r'HostConfig.Sysctls gives key "a" twice'):
        get_str_map(obj('{"s": {"a": "1", "a": "2"}}'), "S", "HostConfig.Sysctls")


@pytest.mark.parametrize(
    ("body", "kind"),
    [(b"[]", "an array"), (b'"x"', "a string"), (b"1", "a number"), (b"null", "null"),
     (b"true", "a boolean")],
)  # fmt: skip
def test_as_object_refuses_any_other_top_level_value(body: bytes, kind: str) -> None:
    with pytest.raises(InvalidBody) as caught:
        as_object(decode(body), "container create body")
    assert caught.value.message == (
        f"invalid JSON body: container create body must be an object, not {kind}"
    )


def test_as_object_accepts_an_object() -> None:
    assert as_object(decode(b'{"a": 1}'), "body") == JsonObject((("a", 1),))


# --- properties -------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_decode_raises_only_body_errors_on_any_bytes(body: bytes) -> None:
    with contextlib.suppress(InvalidBody, AmbiguousBody):
        decode(body)


JSON_TOKENS = st.sampled_from(
    ["{", "}", "[", "]", ",", ":", '"', "\\", "\\u", "d800", "dc00", "0", "-1", "1e999", "NaN",
     "true", "null", " ", "a", "\u017f", "\x00", "\n"]
)  # fmt: skip


@given(st.lists(JSON_TOKENS, max_size=60).map("".join))
def test_decode_raises_only_body_errors_on_json_like_text(text: str) -> None:
    with contextlib.suppress(InvalidBody, AmbiguousBody):
        decode(text.encode())


SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
FIELD_NAMES = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=12)


@given(
    st.lists(FIELD_NAMES, unique_by=str.lower).flatmap(
        lambda keys: st.fixed_dictionaries({key: SCALARS for key in keys})
    )
)
def test_every_ascii_spelling_of_a_distinct_key_reads_its_value(
    fields: dict[str, JsonValue],
) -> None:
    body = obj(json.dumps(fields))
    for key, value in fields.items():
        assert body.field(key.upper()) == body.field(key.lower()) == body.field(key) == value
        assert body.has(key.swapcase())


LOOKALIKE_OF = {"s": LONG_S, "k": KELVIN, "i": DOTTED_I}


@given(
    st.text(string.ascii_letters, max_size=6),
    st.sampled_from(sorted(LOOKALIKE_OF)),
    st.text(string.ascii_letters, max_size=6),
    st.booleans(),
)
def test_a_name_spelled_with_a_lookalike_letter_is_ambiguous(
    head: str, letter: str, tail: str, with_ascii_spelling: bool
) -> None:
    name = head + letter + tail
    fields = {head + LOOKALIKE_OF[letter] + tail: True}
    if with_ascii_spelling:
        fields[name.upper()] = False
    body = obj(json.dumps(fields))
    with pytest.raises(AmbiguousBody):
        body.field(name)
    with pytest.raises(AmbiguousBody):
        body.has(name.swapcase())


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=25,
)


@given(JSON_VALUES, st.booleans())
def test_json_dumps_output_round_trips(value: Any, ensure_ascii: bool) -> None:
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    decoded = plain(decode(text.encode()))
    # compare serialisations, so true and 1 or 1 and 1.0 cannot pass for each other
    assert json.dumps(decoded, sort_keys=True) == json.dumps(value, sort_keys=True)
