"""The shipped reference world's folders list the sha256 of every file; a damaged, missing or
added file is refused before the model loads (issue 28)."""

from __future__ import annotations

import shutil

import pytest

from ldmprobe.errors import ModelUnavailableError
from ldmprobe.models.reference import DIGESTS, REFERENCE_WEIGHTS, check_reference, damaged_files


@pytest.mark.parametrize("role", ["generator", "measurer"])
def test_shipped_folders_match_their_digest_lists(role):
    assert (REFERENCE_WEIGHTS / role / DIGESTS).is_file()
    assert damaged_files(REFERENCE_WEIGHTS / role) == []


@pytest.fixture
def measurer_copy(tmp_path):
    folder = tmp_path / "measurer"
    shutil.copytree(REFERENCE_WEIGHTS / "measurer", folder)
    return folder


def test_a_one_digit_config_edit_is_damage(measurer_copy):
    config = measurer_copy / "open_clip_config.json"
    text = config.read_text()
    config.write_text(text.replace("0.48145466", "0.48145467", 1) if "0.48145466" in text else text + " ")
    assert damaged_files(measurer_copy) == ["open_clip_config.json (changed)"]
    with pytest.raises(ModelUnavailableError, match="damaged: open_clip_config.json"):
        check_reference(measurer_copy)


def test_flipped_weight_bytes_same_size_are_damage(measurer_copy):
    weights = measurer_copy / "open_clip_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01
    weights.write_bytes(bytes(data))
    assert damaged_files(measurer_copy) == ["open_clip_model.safetensors (changed)"]


def test_missing_and_added_files_are_damage(measurer_copy):
    (measurer_copy / "open_clip_config.json").unlink()
    (measurer_copy / "open_clip_model.bin").write_bytes(b"pickle payload")
    assert damaged_files(measurer_copy) == ["open_clip_config.json (missing)",
                                            "open_clip_model.bin (not part of the shipped folder)"]


def test_loading_a_damaged_reference_folder_is_refused(measurer_copy):
    from ldmprobe.models import load as model_load
    from ldmprobe.models import sources as models

    (measurer_copy / "open_clip_config.json").write_text("{}")
    with pytest.raises(ModelUnavailableError, match="Reinstall"):
        model_load.load_measurer(models.resolve_measurer(f"local-dir:{measurer_copy}"), device="cpu")


def test_a_folder_without_a_list_is_not_judged(measurer_copy):
    (measurer_copy / DIGESTS).unlink()
    assert damaged_files(measurer_copy) == []
    check_reference(measurer_copy)


def test_cache_verify_reports_a_damaged_shipped_folder_and_never_removes_it(tmp_path, monkeypatch):
    from ldmprobe.models import reference
    from ldmprobe.usecases import cache as cache_usecase

    shipped = tmp_path / "weights"
    shutil.copytree(REFERENCE_WEIGHTS / "measurer", shipped / "measurer")
    (shipped / "measurer" / "open_clip_config.json").write_text("{}")
    monkeypatch.setattr(reference, "REFERENCE_WEIGHTS", shipped)
    root = tmp_path / "cache"
    root.mkdir()
    for repair in (False, True):
        report = cache_usecase.verify(repair=repair, root=root)
        assert not report["ok"]
        (bad,) = report["bad"]
        assert bad["kind"] == "shipped reference world" and "open_clip_config.json (changed)" in bad["reason"]
        assert bad["repaired"] is False
    assert (shipped / "measurer" / "open_clip_config.json").exists()
