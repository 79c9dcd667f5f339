"""The Modelfile, parsed exactly as ``ollama create`` parses it (grammar and error texts of Ollama's client).

Grammar, in short: a command is a run of ASCII letters (any case) followed by a space or tab; ``#``
where a command would start begins a comment to the end of the line; a value runs to the end of the
line, or across lines while a ``"`` or ``\"\"\"`` quote is open; values are trimmed, then one pair of
quotes is taken off (no escapes, backslashes are literal). ``PARAMETER name value`` needs exactly one
blank before the name; ``MESSAGE role content`` takes ``system``, ``user`` or ``assistant``. Characters
that are not printable (Go's ``strconv.IsPrint``: NBSP, zero-width space, controls) are dropped, except
tabs and newlines inside an open quote. Input is UTF-8 (invalid bytes become U+FFFD), or UTF-16 with a
byte-order mark.

:func:`parse_modelfile` then does what Ollama's client does before it sends the request: last
``TEMPLATE``/``SYSTEM`` wins, ``LICENSE`` repeats, parameters are typed (``stop`` accumulates, any other
name: the last wins), deprecated parameters are dropped with a warning. Paths in ``FROM``/``ADAPTER``
are left to the caller (a ``FROM`` that names no existing file is a model name).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .params import DEPRECATED_PARAMETERS, ParameterError, ParameterValue, parse_parameter

__all__ = [
    "COMMANDS",
    "INVALID_COMMAND",
    "INVALID_ROLE",
    "Command",
    "Message",
    "Modelfile",
    "ModelfileError",
    "decode_modelfile",
    "parse_commands",
    "parse_modelfile",
]

COMMANDS = (
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
)
INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", "renderer", '
    '"parser", "parameter", "message", or "requires"'
)
INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'
ROLES = ("system", "user", "assistant")
_WS = " \t\r\n"
_SEMVER = re.compile(
    r"v(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)"
    r"(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?)?)?"
)


class ModelfileError(ValueError):
    """A Modelfile that ``ollama create`` would refuse.

    ``str()`` says what is wrong, where and what to do; :attr:`ollama_message` is the exact text Ollama
    prints after ``Error:``; :attr:`line` is the 1-based line it is about, when known.
    """

    def __init__(self, message: str, *, ollama_message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.ollama_message = ollama_message
        self.line = line


@dataclass(frozen=True, slots=True)
class Command:
    """One command. ``keyword`` is lowercased (``from``, ``parameter``, ...); ``name`` is the parameter
    name or the message role; ``value`` is unquoted; ``line`` is where the command starts."""

    keyword: str
    value: str
    line: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """A ``MESSAGE`` line: one turn of the conversation stored with the model."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Modelfile:
    """A parsed Modelfile, reduced as Ollama's client reduces it for ``/api/create``."""

    commands: tuple[Command, ...]
    froms: tuple[str, ...]
    """Every FROM value in order (Ollama merges the files of several; a non-file is the base model)."""
    adapters: tuple[str, ...] = ()
    drafts: tuple[str, ...] = ()
    template: str | None = None
    system: str | None = None
    renderer: str | None = None
    parser: str | None = None
    requires: str | None = None
    licenses: tuple[str, ...] = ()
    parameters: Mapping[str, ParameterValue] = field(default_factory=lambda: MappingProxyType({}))
    """Typed: int, float (float32-rounded), bool, and ``stop`` as a tuple of strings."""
    messages: tuple[Message, ...] = ()
    warnings: tuple[str, ...] = ()
    """What Ollama prints to stdout and carries on (``warning: parameter NAME is deprecated``)."""


def decode_modelfile(data: bytes) -> str:
    """Modelfile bytes as text: a UTF-8/UTF-16 byte-order mark honoured, each invalid UTF-8 byte -> U+FFFD."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", "replace")
    elif data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", "replace")
    text = data.decode("utf-8", "surrogateescape")  # one surrogate per bad byte, as Go gives one U+FFFD
    return re.sub("[\udc80-\udcff]", "\ufffd", text)


def _printable(ch: str) -> bool:
    return "!" <= ch <= "~" or ch == " " or (ch > "~" and unicodedata.category(ch)[0] in "LMNPS")


def _unquote(s: str) -> tuple[str, bool]:
    if s.startswith('"""'):
        return (s[3:-3], True) if len(s) >= 6 and s.endswith('"""') else ("", False)
    if s.startswith('"'):
        return (s[1:-1], True) if len(s) >= 2 and s.endswith('"') else ("", False)
    return s, True


class _Value:
    """A value being read, with its trimmed ends tracked so the "quotes closed?" test stays O(1)."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.first = -1
        self.last = -1

    def add(self, ch: str) -> None:
        if ch not in _WS:
            if self.first < 0:
                self.first = len(self.chars)
            self.last = len(self.chars)
        self.chars.append(ch)

    def closed(self) -> bool:
        if self.first < 0:
            return True
        n = self.last - self.first + 1
        head = "".join(self.chars[self.first : min(self.first + 3, self.last + 1)])
        tail = "".join(self.chars[max(self.first, self.last - 2) : self.last + 1])
        if head.startswith('"""'):
            return n >= 6 and tail == '"""'
        if head.startswith('"'):
            return n >= 2 and tail.endswith('"')
        return True

    def text(self) -> str:
        return _unquote("".join(self.chars).strip(_WS))[0]


def _eof(partial: str, line: int, what: str) -> ModelfileError:
    ollama = f"unexpected EOF: {partial}" if partial else "unexpected EOF"
    return ModelfileError(f"Modelfile line {line}: {what} ({ollama})", ollama_message=ollama, line=line)


def parse_commands(source: str | bytes) -> tuple[Command, ...]:
    """The commands of a Modelfile, in order, by Ollama's grammar (see the module docstring).

    Raises:
        ModelfileError: an unknown command, a bad message role, a parameter name with other characters
            than letters, digits and ``_``, a quote left open at the end, or no FROM line; with Ollama's
            own text in ``ollama_message``.
    """
    text = decode_modelfile(source) if isinstance(source, (bytes, bytearray)) else source
    commands: list[Command] = []
    state, line, start = "nil", 1, 1
    word: list[str] = []
    keyword = name = ""
    value = _Value()
    for ch in text:
        if ch in "\r\n":
            line += 1
        if state == "nil":
            if ch == "#":
                state = "comment"
            elif ch not in _WS:
                state, start, word = "name", line, ([ch] if _printable(ch) else [])
        elif state == "comment":
            if ch in "\r\n":
                state = "nil"
        elif state == "name":
            if ch.isascii() and ch.isalpha():
                word.append(ch)
                continue
            given = "".join(word)
            if ch not in " \t" or given.lower() not in COMMANDS:
                shown = given + ("" if ch in _WS else ch)
                raise ModelfileError(
                    f"Modelfile line {start}: {shown!r} is not a command followed by a value: {INVALID_COMMAND} "
                    "(case does not matter); fix the line or start it with # to make it a comment",
                    ollama_message=f"(line {line}): {INVALID_COMMAND}",
                    line=start,
                )
            keyword = given.lower()
            state = {"parameter": "param", "message": "role"}.get(keyword, "value")
            word, name, value = [], "", _Value()
        elif state == "param":
            if ch.isascii() and (ch.isalnum() or ch == "_"):
                word.append(ch)
            elif ch in " \t":
                name, word, state = "".join(word), [], "value"
            else:
                raise _eof(
                    "".join(word),
                    start,
                    "a PARAMETER name may only hold letters, digits and '_', and "
                    "must be followed by a space and a value, as in PARAMETER temperature 0.7",
                )
        elif state == "role":
            if ch.isascii() and ch.isalpha():
                word.append(ch)
            elif ch in " \t":
                name, word, state = "".join(word), [], "value"
                if name not in ROLES:
                    raise ModelfileError(
                        f"Modelfile line {start}: MESSAGE role {name!r} is not allowed: {INVALID_ROLE} "
                        "(lowercase), as in MESSAGE user Hello",
                        ollama_message=f"(line {line}): {INVALID_ROLE}",
                        line=start,
                    )
            else:
                raise _eof(
                    "".join(word),
                    start,
                    "MESSAGE needs a role (system, user or assistant), a space and "
                    "the message, as in MESSAGE user Hello",
                )
        elif ch in _WS and (ch in " \t" or not value.closed()):
            value.add(ch)  # blanks, and newlines inside an open quote, are kept as they are
        elif ch in "\r\n":
            commands.append(Command(keyword, value.text(), start, name))
            state = "nil"
        elif _printable(ch):
            value.add(ch)
    if state in ("name", "param", "role") or (state == "value" and not value.closed()):
        what = (
            'a quoted value is never closed: end it with the same quote it starts with (""" or ")'
            if state == "value"
            else "the last command has no value"
        )
        raise _eof("", start, what)
    if state == "value":
        commands.append(Command(keyword, value.text(), start, name))
    if not any(c.keyword == "from" for c in commands):
        raise ModelfileError(
            "Modelfile: no FROM line; add one naming a GGUF file, a folder or a model, as in FROM ./model.gguf",
            ollama_message="no FROM line",
        )
    return tuple(commands)


def parse_modelfile(source: str | bytes) -> Modelfile:
    """Parse a Modelfile and reduce it as Ollama's client does before it sends ``/api/create``.

    Raises:
        ModelfileError: everything :func:`parse_commands` raises, plus a refused parameter (unknown
            name, bad int/float/bool) and an invalid ``REQUIRES`` version, with Ollama's text.
    """
    commands = parse_commands(source)
    single: dict[str, str] = {}
    lists: dict[str, list[str]] = {"from": [], "adapter": [], "draft": [], "license": []}
    params: dict[str, ParameterValue] = {}
    messages: list[Message] = []
    warnings: list[str] = []
    for c in commands:
        if c.keyword in lists:
            lists[c.keyword].append(c.value)
        elif c.keyword == "message":
            messages.append(Message(c.name, c.value))
        elif c.keyword == "requires":
            if not _SEMVER.fullmatch("v" + c.value):
                raise ModelfileError(
                    f"Modelfile line {c.line}: REQUIRES {c.value!r} is not a version: requires must be a valid "
                    "semver (e.g. 0.14.0)",
                    ollama_message="requires must be a valid semver (e.g. 0.14.0)",
                    line=c.line,
                )
            single[c.keyword] = c.value
        elif c.keyword == "parameter":
            if c.name in DEPRECATED_PARAMETERS:
                warnings.append(f"warning: parameter {c.name} is deprecated")
                continue
            try:
                typed = parse_parameter(c.name, c.value)
            except ParameterError as exc:
                raise ModelfileError(
                    f"Modelfile line {c.line}: {exc}", ollama_message=exc.ollama_message, line=c.line
                ) from None
            previous = params.get(c.name)
            if isinstance(typed, str):  # stop: every line adds one
                params[c.name] = (*(previous if isinstance(previous, tuple) else ()), typed)
            else:
                params[c.name] = typed
        else:
            single[c.keyword] = c.value
    return Modelfile(
        commands=commands,
        froms=tuple(lists["from"]),
        adapters=tuple(lists["adapter"]),
        drafts=tuple(lists["draft"]),
        template=single.get("template"),
        system=single.get("system"),
        renderer=single.get("renderer"),
        parser=single.get("parser"),
        requires=single.get("requires"),
        licenses=tuple(lists["license"]),
        parameters=MappingProxyType(params),
        messages=tuple(messages),
        warnings=tuple(warnings),
    )
