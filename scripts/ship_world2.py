"""Ship an exported reference world 2 as ldmprobe's reference world, and remake what depends on it.

    python scripts/ship_world2.py WEIGHTS [--seeds 24] [--other-guidance 5] [--skip-evaluation]
        [--skip-other-guidance] [--skip-calibration] [--skip-examples] [--dry-run]

WEIGHTS is a world-2 export (``python -m reference_world.train --world 2``: its ``weights/``
folder, with ``generator/`` and ``measurer/`` each carrying ``ldmprobe_reference.json`` with
``"world": 2`` and a digest list every file matches). In order, each step logged to stderr:

1. ldmprobe/reference/weights/{generator,measurer} are replaced by WEIGHTS' (copied byte for
   byte, so their digest lists stay valid; checked again after the copy); world 1's
   evaluation.json and MODEL_CARD.md are removed;
2. ``python -m reference_world.evaluate2 --weights ldmprobe/reference/weights --seeds N
   --format json`` (held-out seeds; the spec's steps and guidance, prompts/reference-world.toml)
   into ldmprobe/reference/weights/evaluation.json;
3. the same at ``--guidance G`` (--other-guidance) into a temporary file;
4. ``python -m reference_world.card --world 2 --weights ldmprobe/reference/weights
   --other-guidance TMP`` (MODEL_CARD.md; the other guidance is recorded in evaluation.json);
5. ``python -m reference_world.calibration prompts/calibration/reference-world --generated
   --world 2`` (the calibration set, made by the new generator at the spec's settings);
6. ``python examples/make_byo_examples.py`` (examples/byo).

The spec's guidance is read from prompts/reference-world.toml (its one place): set it before
shipping. Nothing is committed; the script ends by listing what changed. Bad input exits 2
before anything is touched; a failing step stops the script with that step's exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "ldmprobe" / "reference" / "weights"
SPEC = ROOT / "prompts" / "reference-world.toml"
CALIBRATION = ROOT / "prompts" / "calibration" / "reference-world"
ROLES = {"generator": ("model_index.json", "unet", "vae", "text_encoder", "tokenizer"),
         "measurer": ("open_clip_config.json",)}
BAD_INPUT = 2

sys.path.insert(0, str(ROOT))

from reference_world.calibration import spec_settings  # noqa: E402  (the repository root first)


def say(message: str) -> None:
    print(f"ship_world2: {message}", file=sys.stderr, flush=True)


def check_export(weights: Path) -> list[str]:
    """What is wrong with ``weights`` as a world-2 export (empty when nothing)."""
    from ldmprobe.models.reference import DIGESTS, MARKER, damaged_files

    if not weights.is_dir():
        return [f"{weights} is not a folder"]
    if weights.resolve() == SHIPPED.resolve() or SHIPPED.resolve() in weights.resolve().parents:
        return [f"{weights} is the shipped folder itself; give the export's folder"]
    problems = []
    for role, needed in ROLES.items():
        folder = weights / role
        if not folder.is_dir():
            problems.append(f"{folder} is missing (an export has generator/ and measurer/)")
            continue
        for name in (MARKER, DIGESTS, *needed):
            if not (folder / name).exists():
                problems.append(f"{folder / name} is missing")
        if (folder / MARKER).is_file():
            try:
                marker = json.loads((folder / MARKER).read_text())
            except ValueError:
                problems.append(f"{folder / MARKER} is not JSON")
                continue
            if marker.get("world") != 2:
                problems.append(f"{folder / MARKER} says world {marker.get('world', 1)}, not 2")
            if marker.get("role") not in (None, role):
                problems.append(f"{folder / MARKER} is the {marker.get('role')}'s marker, found in {role}/")
        if (folder / DIGESTS).is_file():
            problems += [f"{role}/{bad}" for bad in damaged_files(folder)]
    return problems


def replace_weights(weights: Path) -> None:
    """Copy the export's folders next to the shipped ones, then swap them in."""
    from ldmprobe.models.reference import damaged_files

    staging = Path(tempfile.mkdtemp(prefix=".ship-", dir=SHIPPED.parent))
    try:
        for role in ROLES:
            shutil.copytree(weights / role, staging / role,
                            ignore=shutil.ignore_patterns("__pycache__", ".*"))
            bad = damaged_files(staging / role)
            if bad:
                raise SystemExit(f"ship_world2: the copy of {role}/ does not match its digests: {bad[:3]}")
        for role in ROLES:
            shutil.rmtree(SHIPPED / role, ignore_errors=True)
            (staging / role).rename(SHIPPED / role)
        for stale in ("evaluation.json", "MODEL_CARD.md"):
            (SHIPPED / stale).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_step(what: str, command: list[str], stdout: Path | None = None) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    shown = " ".join(command) + (f" > {stdout}" if stdout else "")
    say(f"{what}: {shown}")
    started = time.time()
    if stdout is None:
        code = subprocess.call(command, cwd=ROOT, env=env)
    else:
        partial = stdout.with_name(stdout.name + ".partial")
        with partial.open("w") as handle:
            code = subprocess.call(command, cwd=ROOT, env=env, stdout=handle)
        if code == 0:
            partial.replace(stdout)
        else:
            partial.unlink(missing_ok=True)
    if code != 0:
        say(f"{what} failed (exit {code}); the steps after it were not run")
        raise SystemExit(code)
    say(f"{what}: done in {time.time() - started:.0f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="an exported world-2 weights folder (generator/, measurer/)")
    parser.add_argument("--seeds", type=int, default=24, help="held-out seeds per word and template (default 24)")
    parser.add_argument("--other-guidance", type=float, default=5.0, metavar="G",
                        help="the card's second guidance (default 5)")
    parser.add_argument("--device", default="cpu", help="for evaluate2 (default cpu)")
    parser.add_argument("--skip-evaluation", action="store_true",
                        help="no evaluate2 and no card (evaluation.json and MODEL_CARD.md are then absent)")
    parser.add_argument("--skip-other-guidance", action="store_true", help="the card without a second guidance")
    parser.add_argument("--skip-calibration", action="store_true", help="keep prompts/calibration/reference-world")
    parser.add_argument("--skip-examples", action="store_true", help="keep examples/byo")
    parser.add_argument("--dry-run", action="store_true", help="check WEIGHTS and print the steps; change nothing")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    try:
        steps, guidance = spec_settings(SPEC)
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError) as exc:
        parser.error(f"cannot read the spec's steps and guidance from {SPEC}: {exc}")
    if not args.skip_evaluation and not args.skip_other_guidance and args.other_guidance == guidance:
        parser.error(f"--other-guidance {args.other_guidance:g} is the spec's own guidance; give another "
                     "(or --skip-other-guidance)")
    problems = check_export(args.weights)
    if problems:
        parser.error(f"{args.weights} is not a world-2 export: " + "; ".join(problems[:6])
                     + (f" and {len(problems) - 6} more" if len(problems) > 6 else ""))
    say(f"spec {SPEC.relative_to(ROOT)}: {steps} steps, guidance {guidance:g}")
    python = sys.executable
    rel = SHIPPED.relative_to(ROOT).as_posix()
    plan = [f"replace {rel}/generator and measurer with {args.weights}"]
    if not args.skip_evaluation:
        plan.append(f"evaluate2 --seeds {args.seeds} (guidance {guidance:g}) > {rel}/evaluation.json")
        if not args.skip_other_guidance:
            plan.append(f"evaluate2 --seeds {args.seeds} --guidance {args.other_guidance:g} > a temporary file")
        plan.append("card --world 2")
    if not args.skip_calibration:
        plan.append(f"calibration --generated --world 2 into {CALIBRATION.relative_to(ROOT)}")
    if not args.skip_examples:
        plan.append("examples/make_byo_examples.py")
    for n, step in enumerate(plan, start=1):
        say(f"step {n}: {step}")
    if args.dry_run:
        return 0
    say(f"replacing {rel} with {args.weights}")
    replace_weights(args.weights)
    evaluate = [python, "-m", "reference_world.evaluate2", "--weights", rel, "--seeds", str(args.seeds),
                "--device", args.device, "--format", "json"]
    with tempfile.TemporaryDirectory(prefix="ship-world2-") as work:
        if not args.skip_evaluation:
            run_step("evaluation at the spec's guidance", evaluate, SHIPPED / "evaluation.json")
            card = [python, "-m", "reference_world.card", "--world", "2", "--weights", rel]
            if not args.skip_other_guidance:
                other = Path(work) / f"evaluation-guidance-{args.other_guidance:g}.json"
                run_step("evaluation at the other guidance", evaluate + ["--guidance", str(args.other_guidance)], other)
                card += ["--other-guidance", str(other)]
            run_step("model card", card)
    if not args.skip_calibration:
        run_step("calibration set", [python, "-m", "reference_world.calibration",
                                     CALIBRATION.relative_to(ROOT).as_posix(), "--generated", "--world", "2"])
    if not args.skip_examples:
        run_step("byo examples", [python, "examples/make_byo_examples.py"])
    if not args.skip_evaluation:
        report = json.loads((SHIPPED / "evaluation.json").read_text())
        missed = [name for name, ok in report["targets"].items() if not ok]
        say(f"targets at guidance {guidance:g}: {len(report['targets']) - len(missed)} met, {len(missed)} missed"
            + (": " + "; ".join(missed) if missed else ""))
    say("done; review and commit: git status -- ldmprobe/reference/weights prompts/calibration/reference-world "
        "examples/byo")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
