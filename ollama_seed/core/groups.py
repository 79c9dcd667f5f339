"""Collapse the exception groups of task groups into the one error a caller should see."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import NoReturn

from .errors import SeedError

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["collapse", "leaves", "raise_collapsed"]


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """Every non-group exception inside *exc* (depth first)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def collapse(exc: BaseException) -> BaseException:
    """The single exception to raise for *exc*: a SeedError if any, else the first leaf.

    KeyboardInterrupt and SystemExit win over everything, as they should.
    """
    found = list(leaves(exc))
    for kind in ((KeyboardInterrupt, SystemExit), SeedError):
        for leaf in found:
            if isinstance(leaf, kind):
                return leaf
    return found[0] if found else exc


def raise_collapsed(exc: BaseException) -> NoReturn:
    """Raise what a public operation lets out for *exc*: itself when it is no group, else the one
    exception :func:`collapse` picks (never an exception group), its group's noise dropped."""
    err = collapse(exc)
    if err is exc:
        raise exc
    raise err from None
