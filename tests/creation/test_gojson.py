"""The Go JSON encoder and Go's float rules: tables from Go's encoding/json and strconv behaviour."""

from __future__ import annotations

import math
import random
import struct
from decimal import Decimal

import numpy as np
import pytest

from ollama_seed.creation.gofloat import format_json_float, parse_float32, round_to_float32, shortest_digits
from ollama_seed.creation.gojson import Float32, Struct, decode_object, encode, go_bytes, go_text, marshal


@pytest.mark.parametrize(
    ("text", "json"),
    [
        ("plain", '"plain"'),
        ('say "hi" \\ there', '"say \\"hi\\" \\\\ there"'),
        ("<|im_end|>", '"\\u003c|im_end|\\u003e"'),
        ("a & b", '"a \\u0026 b"'),
        ("\n\r\t\b\f", '"\\n\\r\\t\\b\\f"'),
        ("\x00\x01\x1b\x1f", '"\\u0000\\u0001\\u001b\\u001f"'),
        ("\x7f", '"\x7f"'),  # DEL is not escaped
        ("\u2028\u2029", '"\\u2028\\u2029"'),
        ("é 漢字 🦙", '"é 漢字 🦙"'),  # everything else literal UTF-8
        ("\ufffd", '"\ufffd"'),  # a real U+FFFD stays literal
        ("bad \udcff byte", '"bad \\ufffd byte"'),  # surrogateescape: one byte that was not UTF-8
        ("lone \ud800", '"lone \\ufffd"'),
        ("/", '"/"'),
    ],
)
def test_string_escaping(text: str, json: str) -> None:
    assert marshal(text) == json.encode()


@pytest.mark.parametrize(
    ("raw", "json"),
    [
        (b"\xff", b'"\\ufffd"'),
        (b"\xe2\x82", b'"\\ufffd\\ufffd"'),  # a cut sequence: one replacement per byte, as Go
        (b"\xed\xa0\x80", b'"\\ufffd\\ufffd\\ufffd"'),  # an encoded surrogate is three bad bytes
        (b"\xc0\x80", b'"\\ufffd\\ufffd"'),  # overlong
        (b"ok \xe2\x82\xac", '"ok €"'.encode()),
    ],
)
def test_invalid_utf8_bytes_become_one_replacement_per_byte(raw: bytes, json: bytes) -> None:
    assert marshal(raw) == json
    assert marshal(go_text(raw)) == json
    assert go_bytes(go_text(raw)) == raw


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (10.0, "10"),
        (0.1, "0.1"),
        (0.7, "0.7"),
        (-2.5, "-2.5"),
        (123456789.0, "123456789"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.2345e-8, "1.2345e-8"),
        (9.99e-7, "9.99e-7"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e21, "1.5e+21"),
        (1e100, "1e+100"),
        (1.5e-100, "1.5e-100"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (0.0, "0"),
        (-0.0, "-0"),
        (1e16, "10000000000000000"),
        (1e-5, "0.00001"),
        (2**53 + 0.0, "9007199254740992"),
    ],
)
def test_float64_as_go_writes_it(value: float, text: str) -> None:
    assert marshal(value) == text.encode()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (0.123456789, "0.12345679"),
        (0.7, "0.7"),
        (1.0, "1"),
        (16777217.0, "16777216"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (3.4028234663852886e38, "3.4028235e+38"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1.401298464324817e-45, "1e-45"),
        (-0.0, "-0"),
    ],
)
def test_float32_as_go_writes_it(value: float, text: str) -> None:
    assert marshal(Float32(value)) == text.encode()


def test_float32_cutoffs_compare_in_float32() -> None:
    below = np.nextafter(np.float32(1e-6), np.float32(0))
    assert marshal(Float32(float(np.float32(1e-6)))) == b"0.000001"
    assert marshal(Float32(float(below))) == b"9.999999e-7"
    assert marshal(float(np.float32(1e-6))) == b"9.999999974752427e-7"  # the same value as a float64


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused_with_gos_text(bad: float) -> None:
    with pytest.raises(ValueError, match="json: unsupported value"):
        encode({"x": bad})


def test_shortest_float32_digits_agree_with_numpy_on_random_values() -> None:
    rnd = random.Random(20260821)
    for _ in range(20_000):
        f = np.frombuffer(struct.pack("<I", rnd.getrandbits(32)), dtype=np.float32)[0]
        if not np.isfinite(f) or f == 0:
            continue
        n, e = shortest_digits(float(f), 32)
        assert Decimal(n).scaleb(e) == abs(Decimal(np.format_float_scientific(f, unique=True))), f


def test_structs_keep_order_maps_sort_by_utf8_bytes() -> None:
    value = Struct([("z", 1), ("a", {"b": True, "a": None, "B": [], "é": "x", "z": (1, 2)}), ("from", "y")])
    assert marshal(value) == '{"z":1,"a":{"B":[],"a":null,"b":true,"z":[1,2],"é":"x"},"from":"y"}'.encode()


def test_encode_adds_one_newline_and_marshal_none() -> None:
    assert encode({"a": 1}) == b'{"a":1}\n'
    assert marshal([]) == b"[]"
    assert marshal(None) == b"null"


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, object(), {1: "x"}])
def test_values_go_cannot_hold_are_refused(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        marshal(value)  # type: ignore[arg-type]


def test_ints_span_int64_and_uint64() -> None:
    assert marshal([2**64 - 1, -(2**63)]) == b"[18446744073709551615,-9223372036854775808]"


def test_decode_object_makes_numbers_float64_and_strings_valid() -> None:
    doc = decode_object(b'{"top_k": 40, "t": 0.5, "s": ["\\ud800", "a\xffb"], "n": null, "b": false}')
    assert doc == {"top_k": 40.0, "t": 0.5, "s": ["\ufffd", "a\ufffdb"], "n": None, "b": False}
    assert isinstance(doc["top_k"], float)
    assert encode(doc) == b'{"b":false,"n":null,"s":["\xef\xbf\xbd","a\xef\xbf\xbdb"],"t":0.5,"top_k":40}\n'


@pytest.mark.parametrize("raw", [b"[1]", b'"x"', b"1", b"null", b"{", b'{"x": 1e400}', b'{"x": NaN}', b"\xff"])
def test_decode_object_refuses_what_go_refuses(raw: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the kinds of refusal differ
        decode_object(raw)


# strconv.ParseFloat(s, 32)
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0),
        ("0.1", float(np.float32(0.1))),
        (".5", 0.5),
        ("1.", 1.0),
        ("+2.5e-3", float(np.float32(2.5e-3))),
        ("-0", -0.0),
        ("1E2", 100.0),
        ("0x1p-2", 0.25),
        ("0X1.8P1", 3.0),
        ("0x_1p0", 1.0),
        ("0x1_0p0", 16.0),
        ("3.4028235e38", 3.4028234663852886e38),
        ("1e-50", 0.0),
        ("-1e-50", -0.0),
        ("1e-45", 1.401298464324817e-45),
        ("inf", math.inf),
        ("+Inf", math.inf),
        ("-infinity", -math.inf),
        ("INFINITY", math.inf),
        ("1" + "0" * 30, float(np.float32(1e30))),
        ("0." + "0" * 500 + "1", 0.0),
    ],
)
def test_parse_float32_accepts_what_go_accepts(text: str, value: float) -> None:
    got = parse_float32(text)
    assert got == value and math.copysign(1, got) == math.copysign(1, value)


def test_parse_float32_nan() -> None:
    assert math.isnan(parse_float32("NaN")) and math.isnan(parse_float32("nan"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "1_000",
        "0x1",
        "0x1.8",
        "1e",
        "e1",
        "+nan",
        "infin",
        "1,5",
        "0b1",
        "0x_p1",
        "0x1__0p0",
        "0x1_p0",
        "\u0661",
        "--1",
        "1e+",
        "0x.p1",
    ],
)
def test_parse_float32_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid syntax"):
        parse_float32(text)


@pytest.mark.parametrize("text", ["3.4028236e38", "1e39", "-1e39", "1e999999999999", "0x1p128"])
def test_parse_float32_range_errors(text: str) -> None:
    with pytest.raises(OverflowError):
        parse_float32(text)


def test_parse_float32_rounds_once_from_the_decimal() -> None:
    # Just above the midpoint of 1 and the next float32: as a float64 it *is* the midpoint, which would
    # then round to even (1.0); rounded straight from the decimal it goes up, as Go's ParseFloat does.
    text = "1.00000005960464477539062500001"
    assert float(np.float32(float(text))) == 1.0
    assert parse_float32(text) == 1.0000001192092896


def test_round_to_float32_ties_to_even_and_overflow() -> None:
    from fractions import Fraction

    assert round_to_float32(Fraction(1) + Fraction(1, 2**24)) == 1.0
    assert round_to_float32(Fraction(1) + Fraction(3, 2**24)) == 1.0000002384185791
    with pytest.raises(OverflowError):
        round_to_float32(Fraction(2**128))


def test_format_json_float_rejects_bad_bits() -> None:
    with pytest.raises(ValueError, match="bits"):
        format_json_float(1.5, 16)
