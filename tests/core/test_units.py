"""Sizes and rates: one grammar (core.units), as a table."""

from __future__ import annotations

import pytest

from ollama_seed.core.units import parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "rate"),
    [("50M", 50e6), ("10MiB", 10 * 2**20), ("800Mbit", 100e6), ("1.5G", 1.5e9), ("100k", 1e5), ("64", 64.0)],
)
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["", "fast", "-5M", "0", "5X"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4G", 4 * 10**9),
        ("4GiB", 4 * 2**30),
        ("4gb", 4 * 10**9),
        ("700M", 700 * 10**6),
        ("64Mi", 64 * 2**20),
        ("4.5k", 4500),
        ("2T", 2 * 10**12),
        ("65536", 65536),
        (" 1 GB ", 10**9),
        ("10bytes", 10),
        (8192, 8192),
        ("0", 0),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "4X", "-1", "1.5.2", "50Mbit", "10MB/s", "4 GiB extra"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("2T", 2e12), ("50MB/s", 50e6), ("400Mbps", 50e6), ("1Gbit/s", 125e6), ("8bit", 1.0), (1000, 1000.0)],
)
def test_parse_rate_takes_the_size_grammar_and_bits(text: str | float, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)
