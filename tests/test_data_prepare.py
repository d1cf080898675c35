"""prepare(): verified mirror copies, idempotence, checksum mismatch, partial-copy safety."""
from __future__ import annotations

import importlib
import io
import json
from pathlib import Path

import pytest
from fixtures_data import MIRROR_COMMIT as COMMIT
from fixtures_data import make_prepare_mirror as make_mirror

from peft_utils.data import DataError
from peft_utils.data.prepare import build_manifest, load_manifest, prepare, verify

prepare_module = importlib.import_module("peft_utils.data.prepare")

SHARED = Path(__file__).parents[1].parent / "shared" / "data"
def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_copy_from_mirror_is_verified_and_idempotent(tmp_path):
    mirror, manifest = make_mirror(tmp_path)
    assert manifest["commit"] == COMMIT and len(manifest["files"]) == 4
    dest = prepare("sib200", tmp_path / "data", mirror=mirror, manifest=manifest)
    assert dest == tmp_path / "data" / "sib200"
    assert verify(dest, manifest) == []
    assert (dest / "eng_Latn" / "train.tsv").read_text() == \
        (mirror / "eng_Latn" / "train.tsv").read_text()
    stamp = (dest / "labels.txt").stat().st_mtime_ns
    # A verified copy is kept as is: the (now missing) mirror is not even consulted.
    again = prepare("sib200", tmp_path / "data", mirror=tmp_path / "gone", manifest=manifest)
    assert again == dest and (dest / "labels.txt").stat().st_mtime_ns == stamp
    assert leftovers(tmp_path / "data") == []


def test_checksum_mismatch_names_the_file_and_writes_nothing(tmp_path):
    mirror, manifest = make_mirror(tmp_path)
    (mirror / "eng_Latn" / "dev.tsv").write_text("index_id\tcategory\ttext\n2\tsports\tGO\n")
    with pytest.raises(DataError, match="sha256 mismatch") as info:
        prepare("sib200", tmp_path / "data", mirror=mirror, manifest=manifest)
    assert "eng_Latn/dev.tsv" in str(info.value)
    assert not (tmp_path / "data" / "sib200").exists()
    assert leftovers(tmp_path / "data") == []
    (mirror / "eng_Latn" / "dev.tsv").write_text("index_id\tcategory\ttext\n2\tsports\tGo\n")
    (mirror / "labels.txt").unlink()
    with pytest.raises(DataError, match="labels.txt: missing from the mirror"):
        prepare("sib200", tmp_path / "data", mirror=mirror, manifest=manifest)


def test_failure_mid_copy_keeps_the_previous_copy(tmp_path, monkeypatch):
    mirror, manifest = make_mirror(tmp_path)
    dest = prepare("sib200", tmp_path / "data", mirror=mirror, manifest=manifest)
    before = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    # Upstream moved on: a new manifest that the old copy no longer satisfies.
    (mirror / "labels.txt").write_text("travel\nsports\nhealth\n")
    new_manifest = build_manifest("sib200", mirror, "owner/repo",
                                  {f["path"]: f["upstream"] for f in manifest["files"]})
    real_copy, calls = prepare_module._copy_verified, []

    def flaky(src, dst, expected):
        calls.append(src)
        if len(calls) == 3:
            raise OSError("disk full")
        real_copy(src, dst, expected)

    monkeypatch.setattr(prepare_module, "_copy_verified", flaky)
    with pytest.raises(OSError, match="disk full"):
        prepare("sib200", tmp_path / "data", mirror=mirror, manifest=new_manifest)
    after = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert after == before
    assert leftovers(tmp_path / "data") == []
    monkeypatch.setattr(prepare_module, "_copy_verified", real_copy)
    prepare("sib200", tmp_path / "data", mirror=mirror, manifest=new_manifest)
    assert verify(dest, new_manifest) == [] and verify(dest, manifest) == ["labels.txt"]


def test_download_uses_the_pinned_commit_and_checks_sums(tmp_path, monkeypatch):
    mirror, manifest = make_mirror(tmp_path)
    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        rel = next(f["path"] for f in manifest["files"]
                   if f["upstream"] and url.endswith("/" + f["upstream"]))
        return io.BytesIO((mirror / rel).read_bytes())

    monkeypatch.setattr(prepare_module, "default_mirror", lambda name: None)
    monkeypatch.setattr(prepare_module.urllib.request, "urlopen", fake_urlopen)
    dest = prepare("sib200", tmp_path / "data", manifest=manifest)
    assert verify(dest, manifest) == []
    assert f"https://raw.githubusercontent.com/owner/repo/{COMMIT}/data/annotated/eng_Latn/" \
           "train.tsv" in urls
    assert len(urls) == 3  # SOURCE_COMMIT is written from the manifest, not downloaded
    (mirror / "labels.txt").write_text("tampered\n")
    with pytest.raises(DataError, match="sha256 mismatch"):
        prepare("sib200", tmp_path / "fresh", manifest=manifest)


def test_unknown_name_is_rejected():
    with pytest.raises(DataError, match="unknown data set"):
        load_manifest("imagenet")


@pytest.mark.parametrize("name", ["sib200", "brighter", "ntrex"])
def test_shipped_manifests_match_the_shared_data(name):
    manifest = load_manifest(name)
    assert manifest["name"] == name and len(manifest["commit"]) == 40
    assert all(f["upstream"] or f["path"] == "SOURCE_COMMIT" for f in manifest["files"])
    if not (SHARED / name).is_dir():
        pytest.skip("../shared/data not present")
    assert (SHARED / name / "SOURCE_COMMIT").read_text().strip() == manifest["commit"]
    assert verify(SHARED / name, manifest) == []


@pytest.mark.skipif(not (SHARED / "sib200").is_dir(), reason="../shared/data not present")
def test_prepare_real_sib200_from_the_shared_mirror(tmp_path):
    dest = prepare("sib200", tmp_path / "data", mirror=SHARED / "sib200")
    assert (dest / "eng_Latn" / "train.tsv").is_file()
    assert json.loads(json.dumps(load_manifest("sib200")))["files"]
    assert verify(dest, load_manifest("sib200")) == []
