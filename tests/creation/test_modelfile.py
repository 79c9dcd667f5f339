"""The Modelfile parser: Ollama's grammar, its reductions and its exact error texts."""

from __future__ import annotations

import pytest

from ollama_seed.creation.modelfile import (
    INVALID_COMMAND,
    INVALID_ROLE,
    Command,
    Message,
    ModelfileError,
    decode_modelfile,
    parse_commands,
    parse_modelfile,
)

LLAMA3 = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)


def pairs(text: str | bytes) -> list[tuple[str, str, str]]:
    return [(c.keyword, c.name, c.value) for c in parse_commands(text)]


def test_every_command_once() -> None:
    text = f'\nFROM model1\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nTEMPLATE """{LLAMA3}"""    \n'
    assert pairs(text) == [
        ("from", "", "model1"),
        ("adapter", "", "adapter1"),
        ("license", "", "MIT"),
        ("parameter", "param1", "value1"),
        ("template", "", LLAMA3),
    ]


def test_values_are_trimmed_before_quotes_come_off() -> None:
    text = (
        '\nFROM "     model 1"\nADAPTER      adapter3\nLICENSE "MIT       "\nPARAMETER param1        value1\n'
        'TEMPLATE """   {{ .Prompt }}   """    \n'
    )
    assert pairs(text) == [
        ("from", "", "     model 1"),
        ("adapter", "", "adapter3"),
        ("license", "", "MIT       "),
        ("parameter", "param1", "value1"),
        ("template", "", "   {{ .Prompt }}   "),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('FROM "FOO  BAR  "', [("from", "", "FOO  BAR  ")]),
        ("FROM     FOOO BAR    ", [("from", "", "FOOO BAR")]),
        ("FROM /what/is/the path ", [("from", "", "/what/is/the path")]),
        ("FROM llama3:7b-instruct-q4_K_M", [("from", "", "llama3:7b-instruct-q4_K_M")]),
        ("PARAMETER param1 value1\nFROM foo", [("parameter", "param1", "value1"), ("from", "", "foo")]),
        (
            "PARAMETER what the \nFROM lemons make lemonade ",
            [("parameter", "what", "the"), ("from", "", "lemons make lemonade")],
        ),
        ("from x\nFrOm y\n", [("from", "", "x"), ("from", "", "y")]),  # commands are case-insensitive
        ("FROM x # not a comment", [("from", "", "x # not a comment")]),
        ("# comment\n  # indented comment\nFROM foo\n\t", [("from", "", "foo")]),
        ("FROM\tx", [("from", "", "x")]),
        ("FROM C:\\models\\a.gguf", [("from", "", "C:\\models\\a.gguf")]),  # no escapes: backslashes are literal
        ("FROM x\nSYSTEM \n", [("from", "", "x"), ("system", "", "")]),
        (
            "FROM x\nRENDERER r1\nPARSER p1\nREQUIRES 0.14.0\nDRAFT ./d",
            [
                ("from", "", "x"),
                ("renderer", "", "r1"),
                ("parser", "", "p1"),
                ("requires", "", "0.14.0"),
                ("draft", "", "./d"),
            ],
        ),
    ],
)
def test_command_table(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert pairs(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"""\nThis is a\nmultiline system.\n"""', "\nThis is a\nmultiline system.\n"),
        ('"""\nThis is a\nmultiline system."""', "\nThis is a\nmultiline system."),
        ('"""This is a multiline system."""', "This is a multiline system."),
        ('"""\nThis is a multiline system with "quotes".\n"""', '\nThis is a multiline system with "quotes".\n'),
        ('""""""', ""),
        ('""', ""),
        ('"\'"', "'"),
        ('"""\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""', "''\"'\"\"'\"\"'\"'''''\"\"'\"\"'"),
        ('"two\nlines"', "two\nlines"),  # a plain quote spans lines too
        ('"a" "b"', 'a" "b'),  # one pair of quotes comes off, the rest stays
    ],
)
def test_quoted_values(value: str, expected: str) -> None:
    assert parse_commands(f"FROM foo\nSYSTEM {value}\n")[1] == Command("system", expected, 2)


def test_crlf_inside_quotes_is_kept_and_outside_ends_the_line() -> None:
    assert pairs(b'FROM foo\r\nSYSTEM """a\r\nb"""\r\nLICENSE x\r\n') == [
        ("from", "", "foo"),
        ("system", "", "a\r\nb"),
        ("license", "", "x"),
    ]


def test_unprintable_characters_are_dropped_except_blanks_in_quotes() -> None:
    text = 'FROM foo\nSYSTEM a\u00a0b\u200bc\x07d\tt\nTEMPLATE """x\ty\n\u00a0z"""\n'
    assert pairs(text)[1:] == [("system", "", "abcd\tt"), ("template", "", "x\ty\nz")]


def test_messages_carry_their_role() -> None:
    text = (
        "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\nMESSAGE user Hey there!\n"
        'MESSAGE assistant """\nHello, I want to parse all the things!\n"""\n'
    )
    mf = parse_modelfile(text)
    assert mf.messages == (
        Message("system", "You are a file parser. Always parse things."),
        Message("user", "Hey there!"),
        Message("assistant", "\nHello, I want to parse all the things!\n"),
    )
    assert parse_modelfile("FROM foo\nMESSAGE user a: b").messages == (Message("user", "a: b"),)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe" + "FROM bob\nPARAMETER num_ctx 1\nSYSTEM You are a utf16 file.\n".encode("utf-16-le"),
        b"\xfe\xff" + "FROM bob\nPARAMETER num_ctx 1\nSYSTEM You are a utf16 file.\n".encode("utf-16-be"),
        b"\xef\xbb\xbfFROM bob\nPARAMETER num_ctx 1\nSYSTEM You are a utf16 file.\n",
    ],
)
def test_byte_order_marks(data: bytes) -> None:
    assert pairs(data) == [("from", "", "bob"), ("parameter", "num_ctx", "1"), ("system", "", "You are a utf16 file.")]


def test_invalid_utf8_becomes_one_replacement_per_byte() -> None:
    assert decode_modelfile(b"a\xe2\x82b\xffc") == "a\ufffd\ufffdb\ufffdc"
    assert parse_modelfile(b"FROM x\nSYSTEM caf\xe9\n").system == "caf\ufffd"


def err(text: str | bytes) -> ModelfileError:
    with pytest.raises(ModelfileError) as info:
        parse_modelfile(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "ollama", "line"),
    [
        ("\nFROM foo\nBADCOMMAND param1 value1\n", f"(line 3): {INVALID_COMMAND}", 3),
        ("FROM foo\nFROM2 x\n", f"(line 2): {INVALID_COMMAND}", 2),
        ("FROM foo\nSYSTEM:x\n", f"(line 2): {INVALID_COMMAND}", 2),
        ("FROM\nSYSTEM x\n", f"(line 2): {INVALID_COMMAND}", 1),  # Ollama counts the newline it stopped at
        ("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n", f"(line 3): {INVALID_ROLE}", 3),
        ("FROM foo\nMESSAGE System hi\n", f"(line 2): {INVALID_ROLE}", 2),  # roles are not lowercased
        ("\nFROM foo\nPARAMETER param1\n", "unexpected EOF: param1", 3),
        ("FROM foo\nPARAMETER num-ctx 5\n", "unexpected EOF: num", 2),
        ("FROM foo\nMESSAGE system\n", "unexpected EOF: system", 2),
        ("FROM foo\nMESSAGE system", "unexpected EOF", 2),
        ('FROM foo\nSYSTEM """This is a multiline system.""\n', "unexpected EOF", 2),
        ('FROM foo\nSYSTEM "\n', "unexpected EOF", 2),
        ('FROM foo\nTEMPLATE """\nnever closed\n', "unexpected EOF", 2),
        ("FROM", "unexpected EOF", 1),
        ("", "no FROM line", None),
        ("PARAMETER param1 value1", "no FROM line", None),
        ("# FROM x\n", "no FROM line", None),
    ],
)
def test_grammar_errors_carry_ollamas_text(text: str, ollama: str, line: int | None) -> None:
    e = err(text)
    assert e.ollama_message == ollama
    assert e.line == line
    core = ollama.split("): ", 1)[-1]
    assert core in str(e)
    if line is not None:
        assert f"line {line}" in str(e)


@pytest.mark.parametrize(
    ("line", "ollama"),
    [
        ("PARAMETER numa true", "unknown parameter 'numa'"),
        ("PARAMETER Temperature 1", "unknown parameter 'Temperature'"),  # names are case-sensitive
        ("PARAMETER  temperature 1", "unknown parameter ''"),  # two blanks: the name is empty
        ("PARAMETER num_ctx 4k", "invalid int value [4k]"),
        ("PARAMETER num_ctx 1.0", "invalid int value [1.0]"),
        ("PARAMETER seed 9223372036854775808", "invalid int value [9223372036854775808]"),
        ("PARAMETER num_ctx 1_000", "invalid int value [1_000]"),
        ("PARAMETER temperature warm", "invalid float value [warm]"),
        ("PARAMETER top_p 1e39", "invalid float value [1e39]"),
        ("PARAMETER top_p 1_0", "invalid float value [1_0]"),
        ("PARAMETER temperature nan", "json: unsupported value: NaN"),
        ("PARAMETER temperature -Inf", "json: unsupported value: -Inf"),
        ("PARAMETER use_mmap yes", "invalid bool value [yes]"),
        ("REQUIRES latest", "requires must be a valid semver (e.g. 0.14.0)"),
        ("REQUIRES v0.14.0", "requires must be a valid semver (e.g. 0.14.0)"),
        ("REQUIRES 0.14.0-rc1.01", "requires must be a valid semver (e.g. 0.14.0)"),
        ("REQUIRES 1.2-pre", "requires must be a valid semver (e.g. 0.14.0)"),
    ],
)
def test_request_errors_carry_ollamas_text(line: str, ollama: str) -> None:
    e = err(f"FROM x\n\n{line}\n")
    assert (e.ollama_message, e.line) == (ollama, 3)
    assert ollama in str(e) and "line 3" in str(e)


@pytest.mark.parametrize(
    ("line", "name", "value"),
    [
        ("num_ctx 4096", "num_ctx", 4096),
        ("seed -1", "seed", -1),
        ("num_predict +5", "num_predict", 5),
        ("main_gpu 0", "main_gpu", 0),
        ("draft_num_predict 3", "draft_num_predict", 3),
        ("temperature 0.123456789", "temperature", 0.12345679104328156),
        ("top_p 1.0", "top_p", 1.0),
        ("min_p 0.05", "min_p", 0.05000000074505806),
        ("repeat_penalty 0x1p0", "repeat_penalty", 1.0),
        ("use_mmap T", "use_mmap", True),
        ("use_mmap 0", "use_mmap", False),
        ("use_mmap False", "use_mmap", False),
        ('stop "### User: "', "stop", ("### User: ",)),
        ('stop """### User:\n"""', "stop", ("### User:\n",)),
        ("stop <|eot_id|>", "stop", ("<|eot_id|>",)),
    ],
)
def test_parameter_types(line: str, name: str, value: object) -> None:
    assert parse_modelfile(f"FROM x\nPARAMETER {line}\n").parameters == {name: value}


def test_stop_accumulates_and_other_parameters_take_the_last() -> None:
    mf = parse_modelfile(
        "FROM x\nPARAMETER stop a\nPARAMETER temperature 1\nPARAMETER stop b\n"
        "PARAMETER temperature 0.5\nPARAMETER stop a\n"
    )
    assert mf.parameters == {"stop": ("a", "b", "a"), "temperature": 0.5}


def test_deprecated_parameters_are_dropped_with_a_warning_even_when_unparsable() -> None:
    mf = parse_modelfile("FROM x\nPARAMETER mirostat oops\nPARAMETER penalize_newline true\nPARAMETER top_k 1\n")
    assert mf.parameters == {"top_k": 1}
    assert mf.warnings == (
        "warning: parameter mirostat is deprecated",
        "warning: parameter penalize_newline is deprecated",
    )


def test_the_reduction_ollamas_client_makes() -> None:
    mf = parse_modelfile(
        "FROM ./a.gguf\nSYSTEM one\nFROM ./b.gguf\nSYSTEM two\nTEMPLATE t1\nTEMPLATE t2\n"
        'LICENSE MIT\nLICENSE ""\nADAPTER ./l1\nADAPTER ./l2\nREQUIRES 0.14\nRENDERER r\n'
        "PARSER p\nDRAFT ./d\n"
    )
    assert mf.froms == ("./a.gguf", "./b.gguf")
    assert (mf.system, mf.template, mf.renderer, mf.parser, mf.requires) == ("two", "t2", "r", "p", "0.14")
    assert mf.licenses == ("MIT", "")
    assert mf.adapters == ("./l1", "./l2") and mf.drafts == ("./d",)
    assert mf.commands[0] == Command("from", "./a.gguf", 1)


@pytest.mark.parametrize("version", ["0", "1", "0.14", "0.14.0", "1.2.3-rc.1+build.5", "10.0.0-alpha-1"])
def test_requires_accepts_semver_and_its_shorthands(version: str) -> None:
    assert parse_modelfile(f"FROM x\nREQUIRES {version}\n").requires == version


def test_a_long_value_with_many_blanks_parses_in_linear_time() -> None:
    body = "word " * 200_000
    mf = parse_modelfile(f'FROM x\nLICENSE """{body}"""\n')
    assert mf.licenses == (body,)
