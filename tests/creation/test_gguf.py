"""The GGUF header reader, against files written by llama.cpp's own writer (the ``gguf`` package), and
hostile files that must fail fast, clearly and without big allocations."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from ollama_seed.creation.config import MEDIA_MODEL, MEDIA_PROJECTOR, Era
from ollama_seed.creation.gguf import KEEP_ARRAY_ITEMS, GGUFArray, GGUFError, GGUFInfo, read_gguf
from ollama_seed.creation.layers import gguf_media_type
from ollama_seed.creation.sniff import CONVERT_HINT, classify_directory, describe_non_gguf, sniff
from tests.support import ggufmake as gm

Q = gguf.GGMLQuantizationType


def write(
    path: Path, arch: str, fill: Callable[[gguf.GGUFWriter], None], endianess: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE
) -> Path:
    w = gguf.GGUFWriter(path, arch, endianess=endianess)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def read(path: Path) -> GGUFInfo:
    with path.open("rb") as f:
        return read_gguf(f, name=str(path))


def every_type(w: gguf.GGUFWriter) -> None:
    w.add_uint8("t.u8", 255)
    w.add_int8("t.i8", -128)
    w.add_uint16("t.u16", 65535)
    w.add_int16("t.i16", -32768)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 0.1)
    w.add_uint64("t.u64", 2**64 - 1)
    w.add_int64("t.i64", -(2**63))
    w.add_float64("t.f64", 0.1)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo <|im_end|>")
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_str", ["a", "", "ü"])
    w.add_array("t.arr_f32", [1.5, -0.25])
    w.add_array("t.arr_bool", [True, False])
    w.add_array("t.big_ints", list(range(KEEP_ARRAY_ITEMS + 1)))
    w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(5000)])
    w.add_string("t.after", "read after the big arrays")
    w.add_file_type(15)
    w.add_block_count(2)
    w.add_chat_template("{{ messages }}")


def test_every_metadata_type_reads_back_as_written(tmp_path: Path) -> None:
    info = read(write(tmp_path / "m.gguf", "llama", every_type))
    md = info.metadata
    assert (md["t.u8"], md["t.i8"], md["t.u16"], md["t.i16"]) == (255, -128, 65535, -32768)
    assert (md["t.u32"], md["t.i32"], md["t.u64"], md["t.i64"]) == (4_000_000_000, -2_000_000_000, 2**64 - 1, -(2**63))
    assert md["t.f32"] == float(np.float32(0.1)) and md["t.f64"] == 0.1 and md["t.bool"] is True
    assert md["t.str"] == "héllo <|im_end|>" and md["t.after"] == "read after the big arrays"
    assert md["t.arr_i32"] == GGUFArray(gm.I32, 3, (1, -2, 3))
    assert md["t.arr_str"] == GGUFArray(gm.STR, 3, ("a", "", "ü"))
    assert md["t.arr_f32"] == GGUFArray(gm.F32, 2, (1.5, -0.25))
    assert md["t.arr_bool"] == GGUFArray(gm.BOOL, 2, (True, False))
    assert md["t.big_ints"] == GGUFArray(gm.I32, KEEP_ARRAY_ITEMS + 1, None)
    assert md["tokenizer.ggml.tokens"] == GGUFArray(gm.STR, 5000, None)
    assert (info.architecture, info.file_type, info.uint32("llama.block_count")) == ("llama", 15, 2)
    assert info.chat_template == "{{ messages }}"
    assert info.types["t.u8"] == gm.U8 and info.types["general.file_type"] == gm.U32


def test_agrees_with_llama_cpps_reader(tmp_path: Path) -> None:
    def fill(w: gguf.GGUFWriter) -> None:
        every_type(w)
        w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
        w.add_tensor("blk.0.attn_norm.weight", np.zeros((3,), dtype=np.float16))
        w.add_tensor("blk.0.ffn_up.weight", np.zeros((2, 34), dtype=np.uint8), raw_dtype=Q.Q8_0)
        w.add_tensor("blk.0.ffn_down.weight", np.zeros((1, 144), dtype=np.uint8), raw_dtype=Q.Q4_K)

    path = write(tmp_path / "t.gguf", "llama", fill)
    info, ref = read(path), gguf.GGUFReader(path)
    assert info.tensor_count == len(ref.tensors) == 4
    assert info.parameter_count == sum(int(t.n_elements) for t in ref.tensors) == 32 + 3 + 64 + 256
    assert info.data_offset == ref.data_offset
    for key, field in ref.fields.items():
        if key.startswith("GGUF."):
            continue
        mine = info.metadata[key]
        if isinstance(mine, GGUFArray):
            assert mine.count == len(field.data)
            if mine.items is not None:
                assert list(mine.items) == field.contents()
        else:
            assert mine == field.contents(), key
    assert not info.has_compat_tensors


@pytest.mark.parametrize(
    ("arch", "fill", "media", "compat"),
    [
        ("llama", lambda w: w.add_block_count(32), MEDIA_MODEL, False),
        ("clip", lambda w: (w.add_type("mmproj"), w.add_clip_has_vision_encoder(True)), MEDIA_PROJECTOR, True),
        (
            "gemma3",
            lambda w: (w.add_block_count(0), w.add_uint32("gemma3.vision.block_count", 27)),
            MEDIA_PROJECTOR,
            True,
        ),
    ],
)
def test_architectures_classify_as_ollama_does(
    tmp_path: Path, arch: str, fill: Callable[[gguf.GGUFWriter], Any], media: str, compat: bool
) -> None:
    def full(w: gguf.GGUFWriter) -> None:
        fill(w)
        w.add_tensor("v.patch_embd.weight" if compat else "output.weight", np.zeros((2, 2), dtype=np.float32))

    info = read(write(tmp_path / f"{arch}.gguf", arch, full))
    assert info.architecture == arch
    assert gguf_media_type(info, Era.CURRENT) == media
    assert info.has_compat_tensors is compat


def test_file_type_needs_uint32_above_zero(tmp_path: Path) -> None:
    assert read(write(tmp_path / "a.gguf", "llama", lambda w: w.add_file_type(0))).file_type is None
    assert read(write(tmp_path / "b.gguf", "llama", lambda w: w.add_uint64("general.file_type", 15))).file_type is None
    assert read(write(tmp_path / "c.gguf", "llama", lambda w: w.add_uint32("general.file_type", 7))).file_type == 7


def test_architecture_defaults_to_unknown_unless_a_string() -> None:
    assert read_gguf(io.BytesIO(gm.gguf([gm.kv("general.architecture", gm.U32, 1)]))).architecture == "unknown"
    info = read_gguf(io.BytesIO(gm.gguf([gm.kv("general.architecture", gm.STR, b"ll\xffama")])))
    assert info.architecture == "ll\udcffama"  # kept as bytes are, for Go's per-byte \ufffd later


def test_the_tensor_table_matches_the_ggml_block_sizes() -> None:
    from ollama_seed.creation import gguf as reader

    for ggml_type, sizes in reader._BLOCKS.items():
        assert gguf.GGML_QUANT_SIZES[Q(ggml_type)] == sizes


def test_the_whole_file_is_never_read(tmp_path: Path) -> None:
    path = tmp_path / "sparse.gguf"
    header = gm.gguf([gm.arch("llama")], [gm.tensor_info("w", [1 << 28], 0)])
    path.write_bytes(header)
    with path.open("r+b") as f:
        f.truncate(32 * ((len(header) + 31) // 32) + (1 << 30))  # 1 GiB of sparse tensor data

    class Counting(io.FileIO):
        read_bytes = 0

        def read(self, n: int | None = -1) -> bytes:
            data = super().read(n)
            Counting.read_bytes += len(data)
            return data

    with Counting(path, "rb") as counted:
        info = read_gguf(counted)
    assert info.parameter_count == 1 << 28
    assert Counting.read_bytes <= 1 << 20


def fails(data: bytes, match: str) -> GGUFError:
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(GGUFError, match=match) as info:
            read_gguf(io.BytesIO(data), name="bad.gguf")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < 2
    assert peak < (4 << 20) + 2 * len(data)
    assert str(info.value).startswith("bad.gguf: ")
    return info.value


HUGE = 1 << 62


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "only 0 bytes"),
        (b"GGU", "only 3 bytes"),
        (b"GGML" + bytes(20), "not in GGUF format"),
        (b"lmgg" + bytes(20), "legacy GGML"),
        (struct.pack("<Q", 64) + b'{"w":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}' + bytes(10), "safetensors"),
        (b"PK\x03\x04" + bytes(30), "PyTorch"),
        (b"\x80\x02" + bytes(30), "PyTorch"),
        (b"FUGG" + bytes(20), "big-endian"),
        (b"GGUF\x00\x00\x00\x03" + bytes(16), "big-endian"),
        (gm.gguf(version=1), "version 1"),
        (gm.gguf(version=4), "unsupported GGUF version 4"),
        (b"GGUF\x03\x00\x00\x00" + bytes(7), "truncated"),
        (gm.gguf(kv_count=HUGE), "claims 4611686018427387904 metadata entries"),
        (gm.gguf(kv_count=(1 << 20) + 1), "metadata entries"),
        (gm.gguf(tensor_count=HUGE), "claims 4611686018427387904 tensors"),
        (gm.gguf(kv_count=1) + struct.pack("<Q", HUGE) + b"k" + bytes(16), "past the end of the file"),
        (gm.gguf([gm.gstr("k") + struct.pack("<IQ", gm.STR, HUGE)]), "past the end of the file"),
        (gm.gguf([gm.gstr("x" * 70_000) + struct.pack("<I", gm.U8) + b"\0"]), "more than the 65535"),
        (gm.gguf([gm.gstr("k") + struct.pack("<IIQ", gm.ARR, gm.U64, HUGE)]), "claims 4611686018427387904 items"),
        (gm.gguf([gm.gstr("k") + struct.pack("<IIQ", gm.ARR, gm.STR, 1 << 40)]), "items of type string"),
        (
            gm.gguf(
                [
                    gm.gstr("k")
                    + struct.pack("<IIQ", gm.ARR, gm.STR, 2000)
                    + gm.gstr("a") * 1999
                    + struct.pack("<Q", HUGE)
                ]
            ),
            r"k'\[1999\] at byte 18040 claims 4611686018427387904 bytes, past the end",
        ),
        (gm.gguf([gm.kv("k", gm.ARR, (gm.ARR, [(gm.ARR, [(gm.ARR, [(gm.U8, [1])])])]))]), "nests arrays more than 3"),
        (gm.gguf([gm.gstr("k") + struct.pack("<I", 13)]), "unknown value type 13"),
        (gm.gguf([gm.gstr("k") + struct.pack("<IIQ", gm.ARR, 99, 1)]), "array of unknown type 99"),
        (gm.gguf([gm.kv("general.alignment", gm.U32, 0)]), "invalid GGUF alignment: 0"),
        (gm.gguf([gm.arch()], [gm.tensor_info("w", [2, 2, 2, 2, 2])]), "dimensions 5 exceeds maximum 4"),
        (gm.gguf([gm.arch()], [gm.tensor_info("w", [1024], 0)]), "offset\\+size .* exceeds file size"),
        (gm.gguf([gm.arch()], [gm.tensor_info("w", [64], 0, offset=HUGE)]), "exceeds file size"),
    ],
)
def test_hostile_files_fail_fast_and_clearly(data: bytes, match: str) -> None:
    fails(data, match)


def test_every_truncation_of_a_real_file_is_refused(tmp_path: Path) -> None:
    def fill(w: gguf.GGUFWriter) -> None:
        every_type(w)
        w.add_tensor("w", np.ones((4, 4), dtype=np.float32))

    data = write(tmp_path / "t.gguf", "llama", fill).read_bytes()
    info = read_gguf(io.BytesIO(data))
    data_end = info.data_offset + 64
    for n in [*range(0, 200), *range(200, info.data_offset, 997), info.data_offset, data_end - 1]:
        with pytest.raises(GGUFError):
            read_gguf(io.BytesIO(data[:n]))
    assert read_gguf(io.BytesIO(data[:data_end])).parameter_count == 16


def test_big_endian_files_from_llama_cpps_writer_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "be.gguf", "llama", lambda w: w.add_block_count(1), endianess=gguf.GGUFEndian.BIG)
    with pytest.raises(GGUFError, match=r"big-endian.*gguf-convert-endian"):
        read(path)


def test_a_safetensors_file_gets_the_convert_hint(tmp_path: Path) -> None:
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    with pytest.raises(GGUFError, match="safetensors") as info:
        read(path)
    assert CONVERT_HINT in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"GGUF\x03\x00\x00\x00", "gguf"),
        (b"FUGG", "gguf-big-endian"),
        (b"tjgg\x01\x00\x00\x00", "ggml-legacy"),
        (struct.pack("<Q", 100) + b"{", "safetensors"),
        (struct.pack("<Q", 100) + b"[", "unknown"),
        (b"PK\x03\x04", "pytorch-zip"),
        (b"\x80\x04\x95", "pytorch-pickle"),
        (b"\x93NUMPY\x01", "numpy"),
        (b"", "empty"),
        (b"hello world, I am text", "unknown"),
    ],
)
def test_sniff(head: bytes, kind: str) -> None:
    assert sniff(head) == kind


def test_unknown_bytes_are_named_in_the_message() -> None:
    assert "68 65 6c 6c" in describe_non_gguf(b"hello")


@pytest.mark.parametrize(
    ("names", "kind", "files"),
    [
        (
            ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "x.gguf"],
            "safetensors",
            ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"),
        ),
        (["sub/model.safetensors", "config.json"], "safetensors", ("sub/model.safetensors",)),
        (["consolidated.00.pth", "params.json"], "pytorch", ("consolidated.00.pth",)),
        (["pytorch_model.bin", "a.bin"], "pytorch", ("pytorch_model.bin",)),
        (["mmproj.gguf", "model.gguf", "sub/other.gguf"], "gguf", ("mmproj.gguf", "model.gguf")),
        (["weights.bin"], "bin", ("weights.bin",)),
        (["README.md", "config.json"], "none", ()),
    ],
)
def test_classify_directory_in_ollamas_order(names: list[str], kind: str, files: tuple[str, ...]) -> None:
    found = classify_directory(names)
    assert (found.kind, found.files) == (kind, files)
    problem = found.problem("/models/x")
    assert (problem is None) == (kind == "gguf")
    if kind in ("safetensors", "pytorch"):
        assert problem is not None and CONVERT_HINT in problem
    if kind == "none":
        assert problem is not None and "no Modelfile or safetensors files found" in problem
