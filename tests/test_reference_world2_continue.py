"""A world-2 training exported part way goes on where it stopped, in a new folder (another machine)."""

from __future__ import annotations

import json
import shutil

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

MICRO = ["--images", "200", "--measurer-steps", "2", "--vae-steps", "2", "--unet-steps", "4"]


@pytest.fixture(scope="module")
def part_way(tmp_path_factory):
    """A micro training's export, marked as made after 2 of its recipe's 4 UNet steps."""
    from reference_world import train2

    work = tmp_path_factory.mktemp("first")
    assert train2.main(["--work", str(work)] + MICRO) == 0
    marker = work / "weights" / "generator" / "ldmprobe_reference.json"
    record = json.loads(marker.read_text())
    assert record["unet_steps"] == 4 and record["world"] == 2 and record["recipe"]["unet_steps"] == 4
    record["unet_steps"] = 2
    marker.write_text(json.dumps(record))
    for copy in ("text_encoder", "tokenizer"):  # what a carried export leaves out: made from the measurer
        shutil.rmtree(work / "weights" / "generator" / copy)
    return work / "weights"


def test_continuation_trains_the_rest_on_the_same_schedule(part_way, tmp_path, monkeypatch):
    from reference_world import train, train2

    seen = []
    real = train.lr_at
    monkeypatch.setattr(train, "lr_at", lambda step, total, base, warmup=200: seen.append((step, total, base))
                        or real(step, total, base, warmup))
    assert train2.main(["--work", str(tmp_path / "second"), "--continue-from", str(part_way)]) == 0
    # steps 2 and 3 of 4 at the recipe's own rate (not the continuation rate of world 1's --continue-from)
    assert seen == [(2, 4, train.UNET_LR), (3, 4, train.UNET_LR)]
    record = json.loads((tmp_path / "second" / "weights" / "generator" / "ldmprobe_reference.json").read_text())
    assert record["unet_steps"] == 4 and record["recipe"] == json.loads(
        (part_way / "generator" / "ldmprobe_reference.json").read_text())["recipe"]
    assert [c["unet_steps"] for c in record["continued_from"]] == [2]
    assert json.loads((tmp_path / "second" / "recipe.json").read_text()) == record["recipe"]


def test_continuation_refuses_another_recipe_or_a_non_world_2_folder(part_way, tmp_path, capsys):
    from reference_world import train2

    assert train2.main(["--work", str(tmp_path / "a"), "--continue-from", str(part_way), "--images", "300"]) == 2
    assert "another recipe" in capsys.readouterr().err
    assert train2.main(["--work", str(tmp_path / "b"), "--continue-from", str(tmp_path)]) == 2
    assert "not an exported reference world" in capsys.readouterr().err
