"""World 2's measurer keeps every word legible to the generator: the token-identity loss."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tokens(rows):
    import torch

    out = torch.zeros((len(rows), 12), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row)
    return out


def test_token_identity_loss_is_the_cross_entropy_over_word_positions_only():
    import torch

    from reference_world.nets import TOKEN_HEAD_SCALE, TokenIdentity

    torch.manual_seed(0)
    # start 49406, words, end 49407 (the largest id, as open_clip's argmax finds it), then padding 0
    rows = [[49406, 320, 1125, 539, 49407], [49406, 4998, 1125, 2442, 539, 320, 49407]]
    tokens = _tokens(rows)
    head = TokenIdentity([320, 1125, 539, 4998, 2442, 49406], width=8)
    hidden = torch.randn(2, 9, 8)  # trimmed to the longest caption plus some: positions past it are ignored
    got = head.loss(hidden, tokens).item()
    ids = sorted({320, 1125, 539, 4998, 2442, 49406})
    rows_n = head.rows.detach() / head.rows.detach().norm(dim=-1, keepdim=True)
    terms = []
    for b, row in enumerate(rows):
        for pos in range(1, len(row) - 1):  # neither the start token nor the end token is a target
            h = hidden[b, pos] / hidden[b, pos].norm()
            logits = [TOKEN_HEAD_SCALE * float(h @ r) for r in rows_n]
            top = max(logits)
            lse = top + math.log(sum(math.exp(v - top) for v in logits))
            terms.append(lse - logits[ids.index(row[pos])])
    assert got == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_a_word_outside_the_vocabulary_is_not_a_target():
    import torch

    from reference_world.nets import TokenIdentity

    torch.manual_seed(1)
    head = TokenIdentity([320, 1125], width=4)
    hidden = torch.randn(1, 5, 4)
    both = head.loss(hidden, _tokens([[49406, 320, 777, 1125, 49407]]))
    only = head.loss(hidden, _tokens([[49406, 320, 777, 1125, 49407]]).masked_fill(
        _tokens([[49406, 320, 777, 1125, 49407]]) == 777, 320))
    assert torch.isfinite(both) and not torch.isclose(both, only)  # 777 dropped, not read as 320


@pytest.mark.slow
def test_measurer_with_the_token_loss_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """Stopped after a checkpoint and run again, it ends where an uninterrupted run ends."""
    import torch

    from reference_world import train, world2

    images, scenes = world2.dataset(200, 5, "measurer")
    data = {"images": images, "scenes": scenes}
    monkeypatch.setattr(train, "MEASURER_BATCH", 16)
    monkeypatch.setattr(train, "CHECKPOINT_SECONDS", -1)  # a checkpoint after every step
    straight = tmp_path / "straight"
    straight.mkdir()
    train.stage_measurer(straight, data, steps=4, seed=3, token_loss=0.5)

    stopped = tmp_path / "stopped"
    stopped.mkdir()
    real_save = train.atomic_save

    def save_then_stop(obj, path):
        real_save(obj, path)
        if path.name == "measurer.pt" and obj["step"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "atomic_save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train.stage_measurer(stopped, data, steps=4, seed=3, token_loss=0.5)
    assert "token_head" in torch.load(stopped / "measurer.pt", weights_only=True)
    monkeypatch.setattr(train, "atomic_save", real_save)
    train.stage_measurer(stopped, data, steps=4, seed=3, token_loss=0.5)
    a = torch.load(straight / "measurer.done.pt", weights_only=True)["model"]
    b = torch.load(stopped / "measurer.done.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and the loss does something: without it the same run ends elsewhere
    plain = tmp_path / "plain"
    plain.mkdir()
    train.stage_measurer(plain, data, steps=4, seed=3, token_loss=0.0)
    c = torch.load(plain / "measurer.done.pt", weights_only=True)["model"]
    assert not torch.equal(a["token_embedding.weight"], c["token_embedding.weight"])


def test_a_folder_started_before_the_token_loss_keeps_its_recipe(tmp_path, capsys):
    """A recipe.json written before ``token_loss`` and ``zero_snr`` existed reads as the first recipe."""
    from reference_world import train2

    old = {k: v for k, v in train2.RECIPE.items() if k not in ("token_loss", "zero_snr")}
    old["noise_offset"] = 0.1
    (tmp_path / "recipe.json").write_text(json.dumps(old))
    resumed = train2.recipe_from(train2.parse(["--work", str(tmp_path)]), tmp_path)
    assert resumed["token_loss"] == 0.0 and resumed["zero_snr"] is False
    train2.check_recipe(tmp_path, resumed)  # resuming it is allowed
    asked = train2.recipe_from(train2.parse(["--work", str(tmp_path), "--token-loss", "0.2"]), tmp_path)
    with pytest.raises(SystemExit) as stop:
        train2.check_recipe(tmp_path, asked)
    assert stop.value.code == 2 and "token_loss: 0.0 recorded, 0.2 asked" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--token-loss", "-1"], ["--token-loss", "11"]])
def test_bad_token_loss_exits_2(tmp_path, bad):
    from reference_world import train2

    with pytest.raises(SystemExit) as stop:
        train2.parse(["--work", str(tmp_path)] + bad)
    assert stop.value.code == 2


def test_the_recipe_trains_the_token_loss_and_zero_snr_by_default():
    from reference_world import train2

    assert train2.RECIPE["token_loss"] > 0 and train2.RECIPE["zero_snr"] is True
    assert np.isclose(train2.RECIPE["noise_offset"], 0.0)  # offset noise would put back the start mismatch


def test_the_exported_sampler_may_change_after_the_unet_trained(tmp_path, capsys):
    """Only the export reads the sampler: an --export-only with another one is allowed and recorded."""
    from reference_world import train2

    recipe = train2.recipe_from(train2.parse(["--work", str(tmp_path)]), tmp_path)
    train2.check_recipe(tmp_path, recipe)
    (tmp_path / "unet.pt").write_bytes(b"")
    other = train2.recipe_from(train2.parse(["--work", str(tmp_path), "--scheduler", "sde-dpmsolver++"]), tmp_path)
    train2.check_recipe(tmp_path, other)
    assert "the exported sampler changed" in capsys.readouterr().err
    assert json.loads((tmp_path / "recipe.json").read_text())["scheduler"] == "sde-dpmsolver++"
    longer = train2.recipe_from(train2.parse(["--work", str(tmp_path), "--scheduler", "ddim", "--unet-steps", "9"]),
                                tmp_path)
    with pytest.raises(SystemExit) as stop:  # a UNet setting with it is still refused
        train2.check_recipe(tmp_path, longer)
    assert stop.value.code == 2


def test_the_stochastic_sampler_is_dpm_solver_sde():
    from reference_world.export import make_scheduler

    sched = make_scheduler("sde-dpmsolver++", zero_snr=True)
    assert sched.config.algorithm_type == "sde-dpmsolver++" and sched.config.prediction_type == "v_prediction"
    assert sched.config.timestep_spacing == "trailing" and sched.config.rescale_betas_zero_snr
