"""Signed model images on disk: ``image build --sign`` into a layout or an archive, and ``image verify``/
``image extract`` with trust, which check the cosign signature before anything is read or written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ollama_seed.bundle.image.api import build_image, extract_image, verify_image
from ollama_seed.cli.main import main
from ollama_seed.core.errors import ConfigError, SignatureError
from ollama_seed.core.trustpolicy import TrustPolicy, TrustRule
from ollama_seed.wire.keys import SigningKey
from ollama_seed.wire.trust import Trust
from tests.support.images import layout_doc, layout_put, layout_ref, models_of, rewrite

BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _signed_layout(tmp_path: Path, image_store: tuple[Path, list[str]], signing_keys: dict[str, Path]) -> Path:
    layout = tmp_path / "img"
    key = SigningKey.load(signing_keys["site.key"], None)
    build_image(image_store[1], oci_layout=f"{layout}:t", models_dir=image_store[0], sign=key)
    return layout


def test_a_signed_layout_lists_cosign_referrers_and_verifies(
    tmp_path: Path, image_store: tuple[Path, list[str]], signing_keys: dict[str, Path]
) -> None:
    layout = _signed_layout(tmp_path, image_store, signing_keys)
    index = json.loads((layout / "index.json").read_text())
    refs = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    images = {refs[t]["digest"] for t in ("t", "t-linux-amd64", "t-linux-arm64")}
    # one signature list per signed document (the index and both platforms' manifests, as a push signs),
    # under the referrers tag schema's tag sha256-<hex>, each listing a cosign referrer of that document
    lists = {t: m for t, m in refs.items() if t.startswith("sha256-")}
    assert {f"sha256:{t[7:]}" for t in lists} == images and len(refs) == 6
    for tag, entry in lists.items():
        assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
        (referrer,) = layout_doc(layout, entry["digest"])["manifests"]
        assert referrer["artifactType"] == BUNDLE
        assert layout_doc(layout, referrer["digest"])["subject"]["digest"] == f"sha256:{tag[7:]}"
    trust = Trust.load([signing_keys["site.pub"]])
    report = verify_image(oci_layout=f"{layout}:t", trust=trust)
    assert report.signer is not None and report.signer.fingerprint == trust.keys[0].fingerprint
    out = tmp_path / "out"
    extracted = extract_image(oci_layout=f"{layout}:t-linux-amd64", models_dir=out, trust=trust)
    assert extracted.signer is not None and models_of(out) == models_of(image_store[0])
    # a rebuild of the same tag keeps the signatures it already has, as a registry's fallback tag does
    build_image(
        image_store[1],
        oci_layout=f"{layout}:t",
        models_dir=image_store[0],
        sign=SigningKey.load(signing_keys["other.key"], None),
    )
    again = json.loads((layout / "index.json").read_text())["manifests"]
    relisted = [m for m in again if m["annotations"]["org.opencontainers.image.ref.name"].startswith("sha256-")]
    assert len(relisted) == 3 and all(len(layout_doc(layout, m["digest"])["manifests"]) == 2 for m in relisted)
    assert verify_image(oci_layout=f"{layout}:t", trust=Trust.load([signing_keys["other.pub"]])).signer is not None
    assert verify_image(oci_layout=f"{layout}:t").signer is None  # no trust asked for: no signature checked


def _retag_unsigned(layout: Path) -> None:
    """The platform manifest changed (its label edited) and re-hashed: a digest nobody signed."""

    def change(manifest: dict[str, object], config: dict[str, object]) -> None:
        config["config"]["Labels"]["x"] = "y"  # type: ignore[index]

    rewrite(layout, "t-linux-amd64", change)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("other key", "no signature there is by a key or CA you trust"),
        ("tampered", "no signature of its manifest"),
        ("unsigned", "no signature of its manifest"),
    ],
)
def test_untrusted_layouts_are_refused_before_the_store_is_touched(
    tmp_path: Path, image_store: tuple[Path, list[str]], signing_keys: dict[str, Path], case: str, message: str
) -> None:
    if case == "unsigned":
        layout = tmp_path / "img"
        build_image(image_store[1], oci_layout=f"{layout}:t", models_dir=image_store[0])
    else:
        layout = _signed_layout(tmp_path, image_store, signing_keys)
    if case == "tampered":
        _retag_unsigned(layout)
    trust = Trust.load([signing_keys["other.pub" if case == "other key" else "site.pub"]])
    with pytest.raises(SignatureError, match=message):
        verify_image(oci_layout=f"{layout}:t-linux-amd64", trust=trust)
    out = tmp_path / "out"
    with pytest.raises(SignatureError, match="nothing was written") as info:
        extract_image(oci_layout=f"{layout}:t-linux-amd64", models_dir=out, trust=trust)
    assert "--sign KEY" in str(info.value)
    assert not out.exists()  # not even the models directory was made


def test_trust_rules_match_an_image_on_disk_by_its_oci_name(
    tmp_path: Path, image_store: tuple[Path, list[str]], signing_keys: dict[str, Path]
) -> None:
    layout = tmp_path / "img"
    build_image(image_store[1], oci_layout=f"{layout}:t", models_dir=image_store[0])  # unsigned
    other = TrustPolicy((TrustRule("registry.lan/*", (str(signing_keys["site.pub"]),)),))
    assert verify_image(oci_layout=f"{layout}:t", trust=other).signer is None  # the rule does not match
    warn = TrustPolicy((TrustRule(f"oci:{layout.resolve()}:*", (str(signing_keys["site.pub"]),), (), "warn"),))
    assert verify_image(oci_layout=f"{layout}:t", trust=warn).signer is None  # logged, then read
    enforce = TrustPolicy((TrustRule("oci:*", (str(signing_keys["site.pub"]),)),))
    with pytest.raises(SignatureError):
        verify_image(oci_layout=f"{layout}:t", trust=enforce)


def test_a_signed_archive_verifies_and_the_cli_reports_the_signer(
    tmp_path: Path,
    image_store: tuple[Path, list[str]],
    signing_keys: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive = tmp_path / "img.tar"
    common = ["--models-dir", str(image_store[0]), "--progress", "none"]
    assert (
        main(
            [
                "image",
                "build",
                *image_store[1],
                "--oci-archive",
                str(archive),
                "--sign",
                str(signing_keys["site.key"]),
                *common,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(["image", "verify", "--oci-archive", str(archive), "--trust", str(signing_keys["site.pub"]), "--json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["signer"].startswith("key sha256:")
    out = tmp_path / "out"
    args = ["image", "extract", "--oci-archive", f"{archive}:latest", "--models-dir", str(out), "--progress", "none"]
    assert main([*args, "--trust", str(signing_keys["other.pub"])]) == SignatureError.exit_code
    err = capsys.readouterr().err
    assert "no signature there is by a key or CA you trust" in err and "nothing was written" in err
    assert not out.exists()
    assert main([*args, "--trust", str(signing_keys["site.pub"])]) == 0
    assert "signed by key sha256:" in capsys.readouterr().out
    assert models_of(out) == models_of(image_store[0])


def test_cosign_legacy_needs_a_registry(
    tmp_path: Path, image_store: tuple[Path, list[str]], signing_keys: dict[str, Path]
) -> None:
    with pytest.raises(ConfigError, match="--push REF"):
        build_image(
            image_store[1],
            oci_layout=f"{tmp_path / 'img'}:t",
            models_dir=image_store[0],
            sign=SigningKey.load(signing_keys["site.key"], None),
            cosign_legacy=True,
        )
    assert not (tmp_path / "img").exists()


def test_the_layout_signature_is_over_what_the_tag_names(
    tmp_path: Path, image_store: tuple[Path, list[str]], signing_keys: dict[str, Path]
) -> None:
    """A signature list under another document's tag does not vouch for this one, even by a trusted key."""
    layout = _signed_layout(tmp_path, image_store, signing_keys)
    amd = layout_ref(layout, "t-linux-amd64")["digest"]
    arm = layout_ref(layout, "t-linux-arm64")["digest"]
    index = json.loads((layout / "index.json").read_text())
    lists = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    own, other = lists[f"sha256-{amd[7:]}"], lists[f"sha256-{arm[7:]}"]
    own["digest"], own["size"] = other["digest"], other["size"]  # amd64's list now holds arm64's signature
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(SignatureError, match="no signature of its manifest"):
        verify_image(oci_layout=f"{layout}:t-linux-amd64", trust=Trust.load([signing_keys["site.pub"]]))
    assert verify_image(oci_layout=f"{layout}:t", trust=Trust.load([signing_keys["site.pub"]])).signer is not None


def _index(layout: Path) -> dict[str, Any]:
    return dict(json.loads((layout / "index.json").read_text()))


def _garbled_list(layout: Path) -> None:
    """The signature list of the tagged index points at bytes that are not an image index."""
    index = _index(layout)
    digest, size = layout_put(layout, b"not json")
    for m in index["manifests"]:
        if m["annotations"]["org.opencontainers.image.ref.name"].startswith("sha256-"):
            m["digest"], m["size"] = digest, size
    (layout / "index.json").write_text(json.dumps(index))


def _odd_annotations(layout: Path) -> None:
    """Entries whose annotations are not an object, and a missing signature blob: passed over."""
    index = _index(layout)
    index["manifests"] += [{"mediaType": "x", "digest": "sha256:" + "0" * 64, "size": 2, "annotations": ["t"]}]
    for m in index["manifests"]:
        names = m["annotations"] if isinstance(m["annotations"], dict) else {}
        if names.get("org.opencontainers.image.ref.name", "").startswith("sha256-"):
            m["digest"] = "sha256:" + "9" * 64  # a list that is not in the layout
    (layout / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize(
    ("damage", "message"), [(_garbled_list, "referrers list is not JSON"), (_odd_annotations, "no signature")]
)
def test_damaged_signature_lists_fail_closed(
    tmp_path: Path,
    image_store: tuple[Path, list[str]],
    signing_keys: dict[str, Path],
    damage: Callable[[Path], None],
    message: str,
) -> None:
    layout = _signed_layout(tmp_path, image_store, signing_keys)
    damage(layout)
    out = tmp_path / "out"
    with pytest.raises(SignatureError, match=message):
        extract_image(oci_layout=f"{layout}:t", models_dir=out, trust=Trust.load([signing_keys["site.pub"]]))
    assert not out.exists()
