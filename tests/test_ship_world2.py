"""scripts/ship_world2.py: bad input exits 2 before anything is touched; a good export passes the
checks (dry run); the copy keeps the digest lists valid; the calibration step it runs files
pictures by their pixels (with a stand-in generator). No model is run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldmprobe.models.reference import MARKER, REFERENCE_WEIGHTS, damaged_files, write_digests

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_world2.py"


@pytest.fixture(scope="module")
def ship():
    spec = importlib.util.spec_from_file_location("ship_world2", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_export(root: Path, world: int = 2) -> Path:
    """A folder shaped like an export (tiny stand-in files), with markers and valid digests."""
    for role, needed in (("generator", ("model_index.json", "unet/config.json", "vae/config.json",
                                        "text_encoder/config.json", "tokenizer/tokenizer.json")),
                         ("measurer", ("open_clip_config.json",))):
        for name in needed:
            (root / role / name).parent.mkdir(parents=True, exist_ok=True)
            (root / role / name).write_text("{}")
        (root / role / MARKER).write_text(json.dumps({"ldmprobe_reference": 1, "world": world, "role": role}))
        write_digests(root / role)
    return root


def exit_code(ship, argv) -> int:
    with pytest.raises(SystemExit) as raised:
        ship.main([str(a) for a in argv])
    return raised.value.code


def test_a_good_export_passes_the_checks_and_a_dry_run_changes_nothing(ship, tmp_path, capsys):
    export = fake_export(tmp_path / "w")
    before = {p: p.stat().st_mtime_ns for p in REFERENCE_WEIGHTS.rglob("*") if p.is_file()}
    assert ship.check_export(export) == []
    assert ship.main([str(export), "--dry-run", "--seeds", "2"]) == 0
    err = capsys.readouterr().err
    assert "step 1: replace" in err and "calibration" in err and "make_byo_examples" in err
    assert "--seeds 2" in err
    assert {p: p.stat().st_mtime_ns for p in REFERENCE_WEIGHTS.rglob("*") if p.is_file()} == before
    skipped = ship.main([str(export), "--dry-run", "--skip-calibration", "--skip-examples", "--skip-evaluation"])
    assert skipped == 0 and "calibration" not in capsys.readouterr().err.split("step 1")[1]


@pytest.mark.parametrize("damage, message", [
    (lambda root: None, "not a folder"),
    (lambda root: fake_export(root, world=1), "says world 1, not 2"),
    (lambda root: (fake_export(root), (root / "measurer" / "open_clip_config.json").write_text("[]")),
     "open_clip_config.json (changed)"),
    (lambda root: (fake_export(root), (root / "generator" / "unet" / "extra.bin").write_text("x")),
     "extra.bin (not part of the shipped folder)"),
    (lambda root: (fake_export(root), __import__("shutil").rmtree(root / "measurer")), "measurer is missing"),
])
def test_a_bad_export_exits_2_with_the_reason(ship, tmp_path, capsys, damage, message):
    root = tmp_path / "w"
    damage(root)
    assert exit_code(ship, [root]) == 2
    assert message in capsys.readouterr().err


def test_bad_options_exit_2(ship, tmp_path, capsys):
    export = fake_export(tmp_path / "w")
    assert exit_code(ship, [export, "--seeds", "0"]) == 2
    _, guidance = ship.spec_settings(ship.SPEC)
    assert exit_code(ship, [export, "--other-guidance", guidance]) == 2
    assert "the spec's own guidance" in capsys.readouterr().err
    assert exit_code(ship, [REFERENCE_WEIGHTS]) == 2  # the shipped folder is not an export to ship
    assert "shipped folder itself" in capsys.readouterr().err


def test_the_copy_keeps_the_digests_valid(ship, tmp_path, monkeypatch):
    export = fake_export(tmp_path / "w")
    shipped = tmp_path / "pkg" / "weights"
    (shipped / "generator").mkdir(parents=True)
    (shipped / "generator" / "old.bin").write_text("world 1")
    (shipped / "MODEL_CARD.md").write_text("world 1's card")
    monkeypatch.setattr(ship, "SHIPPED", shipped)
    ship.replace_weights(export)
    assert not (shipped / "generator" / "old.bin").exists() and not (shipped / "MODEL_CARD.md").exists()
    for role in ("generator", "measurer"):
        assert damaged_files(shipped / role) == []
        assert json.loads((shipped / role / MARKER).read_text())["world"] == 2
    assert [p.name for p in shipped.parent.iterdir()] == ["weights"]  # no staging folder left behind


def test_the_world2_calibration_set_files_generated_pictures_by_their_pixels_and_says_how_it_was_made(
        tmp_path, monkeypatch):
    """The calibration step's mechanics with a stand-in generator that draws the world's own
    renders: world 2's generator captions, the spec's steps and guidance, every option filled,
    each picture filed under what the pixel reader reads, and made_by.json naming the UNet."""
    from ldmprobe.models.weights_hash import hash_file
    from reference_world import calibration, evaluate, world, world2

    unet = tmp_path / "w" / "generator" / "unet" / "diffusion_pytorch_model.safetensors"
    unet.parent.mkdir(parents=True)
    unet.write_bytes(b"unet")
    rng = np.random.default_rng(0)
    calls = []

    def fake_generate(pipe, prompts, seeds, batch=64, guidance=None):
        calls.append((list(prompts), list(seeds), guidance, evaluate.SETTINGS.get("steps")))
        return [world.render(world2.draw_scene(rng, "generator")) for _ in prompts]

    monkeypatch.setattr(evaluate, "load_pipeline", lambda folder: None)
    monkeypatch.setattr(evaluate, "generate", fake_generate)
    monkeypatch.setattr(evaluate, "SETTINGS", dict(evaluate.SETTINGS))
    steps, guidance = calibration.spec_settings()
    out = tmp_path / "cal"
    counts = calibration.write_generated_calibration(out, tmp_path / "w", per_option=2, batch=16, steps=steps,
                                                     guidance=guidance, world_version=2)
    assert min(counts.values()) == 2 and set(counts) == {(g, o) for g, opts in calibration.GROUPS.items() for o in opts}
    assert all(g == guidance and s == steps for _, _, g, s in calls)
    assert calls[0][1][0] == calibration.SEED_BASE
    words = {w for prompts, *_ in calls for p in prompts for w in p.split()}
    assert world2.ENCODER_WORD not in words  # the generator's story never names the encoder-borne word
    for group, options in calibration.GROUPS.items():
        for option in options:
            files = sorted((out / group / option).glob("*.png"))
            assert len(files) == 2
            assert all(world.read_attributes(np.asarray(Image.open(f).convert("RGB")))[group] == option for f in files)
    made = json.loads((out / calibration.MADE_BY).read_text())
    assert made["world"] == 2 and made["steps"] == steps and made["guidance"] == guidance
    assert made["unet_sha256"] == hash_file(unet)
