"""Fault injection on the tiny models: kill, signal, corrupt and starve sweeps, then check that
nothing corrupt was used, that the results are the clean run's, and that no temp file is left.

    OMP_NUM_THREADS=1 python benchmarks/faults.py [--kills 8] [--seed 0] [--work DIR]

Every sweep is a real ``python -m ldmprobe sweep`` process on a private cache (2 templates ×
4 terms × 3 seeds). The faults:

- ``kill -9`` at a random moment (``--kills`` times, each followed by nothing: the next fault
  runs on what it left);
- SIGTERM and SIGINT at a random moment (exit 143 / 130 expected);
- 16 bytes flipped in every kind of cache entry: a cached PNG's pixel data, a packed shard of
  image embeddings, of text embeddings and of conditionings, a record of a packed index, the
  image manifest, and the tiny UNet's weights;
- a full disk: the cache on a 1 MiB tmpfs (when this process may mount one; else skipped and
  said so) and the run folder on one.
- (``publish``, issue 28) kills while report.html is written (with and without ``--out``) and
  between the two renames of ``--replace``, each followed by the same command; ``--replace`` on a
  folder holding a file ldmprobe did not write;
- (``rebatch``, issue 28) a kill at ``--batch-size 1`` resumed at ``--batch-size 4``, a CUDA
  out-of-memory (simulated) mid-run, and ``--call-shape 2`` on a cache of default-shape images;
  every cached PNG's bytes are compared with the clean reference's.

After every fault a clean rerun must exit 0; its numbers are compared with a clean reference
run on its own cache (floats within the documented tolerance, everything else identical:
docs/INTEGRITY.md). Counted per fault: corrupt files used (a rerun that exited 0 with a result
outside the tolerance, or an image in its run folder that fails its digest), wrong results
(a rerun that failed or differs), damaged files left in the cache (harmless until used, since
every use checks them), temp files left by the fault, and temp files left after the rerun
and a stale-file sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from faults_cases import (KILLED_PUBLISHING, OOM_TRIAL, USER_IMAGE_TRIAL, edit_same_size,  # noqa: E402
                          flip_keeping_stat, flip_signs_of_a_row, hidden, png_bytes, resaved_without_digest,
                          visible)

SPEC = """name = "faults"
templates = ["a photo of a {} car", "a {} house at night"]
baseline = ""
terms = ["red", "blue", "old", "fancy"]
controls = ["nice"]
probes = ["fire", "ocean", "tree"]
seeds = 3
"""
VOCAB = "\n".join(["fire", "ocean", "tree", "villa", "garden", "river", "street", "palace", "forest", "castle",
                    "cottage", "bridge"]) + "\n"
FLAGS = ["--pipeline", "tiny", "--measurer", "tiny", "--steps", "5", "--batch-size", "2", "--format", "json",
         "--permutations", "99", "--bootstrap", "99", "--no-report"]
#: Every model call has a fixed shape (issue 28), so a resumed or repaired run equals the clean one exactly.
RTOL = ATOL = 0.0


def sweep_cmd(spec: Path, out: Path, extra=(), python=("-m", "ldmprobe")) -> list[str]:
    """The sweep command; ``extra`` flags come last, so they win over ``FLAGS`` (``--batch-size``)."""
    return [sys.executable, *python, "sweep", str(spec), *FLAGS, "--vocab", str(spec.with_name("vocab.txt")),
            "--out", str(out), *extra]


def env_for(cache: Path) -> dict:
    return {**os.environ, "LDMPROBE_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run(spec: Path, out: Path, cache: Path, extra=(), python=("-m", "ldmprobe")) -> subprocess.CompletedProcess:
    return subprocess.run(sweep_cmd(spec, out, extra, python), env=env_for(cache), capture_output=True, text=True,
                          timeout=900)


def numbers(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("provenance", "run", "counts")}


def differences(a, b, where="") -> list[str]:
    """Where two documents differ beyond the tolerance (floats) or at all (anything else)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys differ"]
        return [d for key in a for d in differences(a[key], b[key], f"{where}.{key}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: lengths differ"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        if a != a and b != b:  # both nan
            return []
        return [] if abs(a - b) <= ATOL + RTOL * abs(b) else [f"{where}: {a} vs {b}"]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def temp_files(root: Path) -> list[Path]:
    """Temp files and staging folders (``.NAME.PID-XXXX[.tmp]``) anywhere under ``root``."""
    found = []
    for path in root.rglob(".*"):
        name = path.name
        if name.endswith(".tmp") or (path.is_dir() and "-" in name and name.count(".") >= 2):
            found.append(path)
    return found


def bad_png(path: Path) -> bool:
    from ldmprobe.store.png_check import check_png

    return check_png(path.read_bytes(), path.stem) is not None


def bad_pngs(cache: Path) -> list[Path]:
    return [p for p in (cache / "images").rglob("*.png") if p.parent.name != "index" and bad_png(p)]


def flip(path: Path, offset: int, n: int = 16) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        data = bytearray(fh.read(n))
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in data))


class Bench:
    def __init__(self, work: Path, seed: int):
        self.work, self.rng = work, random.Random(seed)
        self.spec = work / "faults.toml"
        self.spec.write_text(SPEC)
        (work / "vocab.txt").write_text(VOCAB)
        self.cache = work / "cache"
        self.cache.mkdir()
        self.rows: list[dict] = []
        self.n = 0
        self.reference = None
        self.verified: set = set()  # what ``cache verify`` found so far

    def out(self) -> Path:
        self.n += 1
        return self.work / "runs" / f"r{self.n:03d}"

    def clean_reference(self) -> None:
        cache = self.work / "reference-cache"
        cache.mkdir()
        (cache / "models").symlink_to(self.cache / "models", target_is_directory=True)
        proc = run(self.spec, self.out(), cache)
        assert proc.returncode == 0, proc.stderr[-3000:]
        self.reference = numbers(json.loads(proc.stdout))
        self.images = json.loads(proc.stdout)["counts"]["unique"]

    def _reference_changed(self) -> bool:
        """Run the clean reference again (its cache is warm): True, and it is replaced, when the
        numbers differ from the first reference (the statistics code was edited meanwhile)."""
        proc = run(self.spec, self.out(), self.work / "reference-cache")
        if proc.returncode != 0:
            return False
        fresh = numbers(json.loads(proc.stdout))
        if not differences(fresh, self.reference):
            return False
        self.reference = fresh
        return True

    def warm_models(self) -> None:
        proc = subprocess.run([sys.executable, "-m", "ldmprobe", "-q", "check", "--pipeline", "tiny", "--measurer",
                               "tiny"], env=env_for(self.cache), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

    def rerun_and_check(self, fault: str, codes: list[int], expected: str, cache: Path | None = None,
                        note: str = "", extra=()) -> None:
        """A clean rerun after the fault: exit 0, numbers within tolerance, no damaged PNG, no temp file."""
        cache = cache or self.cache
        left_before = len(temp_files(cache))
        verify = self._verify(cache) if expected.startswith("repaired") else None
        out = self.out()
        proc = run(self.spec, out, cache, extra)
        wrong, bad = 1, []
        if proc.returncode == 0:
            found = numbers(json.loads(proc.stdout))
            wrong = int(bool(differences(found, self.reference)))
            if wrong and self._reference_changed():  # ldmprobe's own code changed while this ran
                note = (note + "; " if note else "") + "reference recomputed (the code changed meanwhile)"
                wrong = int(bool(differences(found, self.reference)))
            bad = [p for p in (out / "images").glob("*.png") if bad_png(p)]
        else:
            note = (note + "; " if note else "") + "rerun: " + " ".join(proc.stderr.strip().splitlines()[-1:])[:200]
        # temp files the rerun could not yet remove (they are removed once an hour old): the
        # stale-file sweep is run here at age 0 with live processes excepted, as it would run later
        from ldmprobe.store.cleanup import remove_stale_temp

        remove_stale_temp(cache, max_age=0, every=0)
        left = temp_files(cache)
        verify = "-" if verify is None else self._verify_note(verify, self._verify(cache))
        self.rows.append({
            "fault": fault, "exit codes": ",".join(map(str, codes)) or "-", "expected": expected,
            "rerun exit": proc.returncode, "repairs reported": int("failed their integrity check" in proc.stderr
                                                                    or "was rebuilt" in proc.stderr),
            "corrupt used": len(bad) + (wrong if proc.returncode == 0 else 0), "wrong results": wrong,
            "damaged left in cache": len(bad_pngs(cache)),
            "temp left after kill": left_before, "temp left": len(left), "cache verify": verify, "note": note,
        })

    def _verify(self, cache: Path) -> set | str:
        """What ``ldmprobe cache verify`` (no --repair) finds, as (kind, path) rows, on a copy of the
        cache (a check may remove what it finds damaged, which would hide it from the rerun's report)."""
        copy = self.work / "verify-copy"
        shutil.copytree(cache, copy, symlinks=True)
        try:
            proc = subprocess.run([sys.executable, "-m", "ldmprobe", "cache", "verify", "--format", "json"],
                                  env=env_for(copy), capture_output=True, text=True, timeout=900)
        finally:
            shutil.rmtree(copy, ignore_errors=True)
        try:
            return {(row["kind"], str(row.get("path", "")).replace(str(copy), ""))
                    for row in json.loads(proc.stdout)["bad"]}
        except (ValueError, KeyError, TypeError):
            return f"exit {proc.returncode}, unreadable output"

    def _verify_note(self, before, after) -> str:
        """The kinds ``cache verify`` found before the rerun, less what it already found after the last
        rerun (a damaged record in a packed shard stays: the sweep appends a good copy beside it)."""
        if isinstance(before, str) or isinstance(after, str):
            return before if isinstance(before, str) else after
        kinds = sorted({kind for kind, _ in before - self.verified})
        self.verified = after
        stale = f"; {len(after)} stale after the rerun" if after else ""
        return (", ".join(kinds) if kinds else "nothing") + stale
    def kills(self, n: int) -> None:
        codes = []
        for _ in range(n):
            codes.append(self._stop_at_random(signal.SIGKILL))  # each on what the last one left
        self.rerun_and_check(f"kill -9 × {n} (random moments)", codes, "-9")

    def signals(self) -> None:
        for signum, expected in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
            code = self._stop_at_random(signum)
            self.rerun_and_check(f"{signal.Signals(signum).name} (random moment)", [code], str(expected))

    def _stop_at_random(self, signum, extra=()) -> int:
        """Remove a random share of the cached images, start a sweep, and stop it after a random
        number of them were made again (so it is stopped mid-generation, between or inside
        batches); the exit status as a shell shows it."""
        self._clear_images(self.rng.uniform(0.3, 0.8))
        pngs = lambda: sum(1 for _ in (self.cache / "images").rglob("*.png"))  # noqa: E731
        start, target = pngs(), self.rng.randint(1, 6)
        proc = subprocess.Popen(sweep_cmd(self.spec, self.out(), extra), env=env_for(self.cache), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while proc.poll() is None and pngs() < start + target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(self.rng.uniform(0.0, 0.3))  # anywhere inside the next batch
        proc.send_signal(signum)
        code = proc.wait(timeout=120)
        return 128 + (-code) if code < 0 else code

    def _clear_images(self, fraction: float) -> None:
        """Remove some cached images (and their embeddings stay) so a run has work to stop in."""
        pngs = sorted((self.cache / "images").rglob("*.png"))
        for path in self.rng.sample(pngs, int(len(pngs) * fraction)):
            path.unlink()

    def flips(self) -> None:
        targets = {
            "cached PNG (pixel data)": lambda: [(p, p.stat().st_size // 2) for p in
                                                sorted((self.cache / "images").rglob("*.png"))[:3]],
            "image embeddings shard": lambda: self._shard_targets("embeddings"),
            "text embeddings shard": lambda: self._shard_targets("text"),
            "conditioning shard": lambda: self._shard_targets("conditioning"),
            "packed index record (text embeddings)": lambda: [(p, 140 + 20) for p in  # records: 140 bytes; the 2nd key
                                                               sorted((self.cache / "text").glob("*/packed/*.idx"))[:1]],
            "image manifest": lambda: [(p, p.stat().st_size // 2) for p in
                                       sorted((self.cache / "images" / "index").glob("*.jsonl"))[:1]],
            "tiny UNet weights": lambda: [(p, p.stat().st_size // 2) for p in
                                          (self.cache / "models").rglob("unet/*.safetensors")],
        }
        for name, where in targets.items():
            spots = where()
            for path, offset in spots:
                flip(path, offset)
            self.rerun_and_check(f"16 bytes flipped: {name}", [], "repaired", note=f"{len(spots)} file(s)")

    def _shard_targets(self, kind: str) -> list[tuple[Path, int]]:
        return [(p, 8) for p in sorted((self.cache / kind).glob("*/packed/*.bin"))[:2]]

    # ------------------------------------------------------------------ issue 28

    def _pngs(self) -> list[Path]:
        return sorted(p for p in (self.cache / "images").rglob("*.png") if p.parent.name != "index")

    def integrity2(self) -> None:
        """What issue 28's audit found used silently or wrong, each followed by the clean rerun."""
        for path in self._pngs()[:2]:
            path.write_bytes(resaved_without_digest(path))
        self.rerun_and_check("PNG re-saved by an editor: recipe kept, digest dropped, pixels changed", [], "repaired",
                             note="2 file(s)")
        for path in self._pngs()[:2]:
            data = bytearray(path.read_bytes())
            data[data.index(b"ldmprobe-digest") + 14] ^= 0x01  # one bit of the digest chunk's keyword
            path.write_bytes(bytes(data))
            flip(path, path.stat().st_size // 2)  # and the pixel data
        self.rerun_and_check("1 bit flipped in the digest chunk's keyword (+ pixel bytes)", [], "repaired",
                             note="2 file(s)")
        models = self.cache / "models"
        unet = next(models.rglob("tiny-generator-v*/unet/*.safetensors"))
        self._model_fault("tiny UNet weights damaged, size, mtime and inode kept",
                          lambda: flip_keeping_stat(unet, unet.stat().st_size // 2))
        config = next(models.rglob("tiny-generator-v*/unet/config.json"))
        self._model_fault("one digit edited in the UNet config (same size)",
                          lambda: edit_same_size(config, '"norm_eps": 1e-05', '"norm_eps": 2e-05'))
        tokenizer = next(models.rglob("tiny-generator-v*/tokenizer/tokenizer.json"))
        self._model_fault("a tokenizer entry renamed (same size)",
                          lambda: edit_same_size(tokenizer, '"car</w>"', '"cas</w>"'))
        vocab = sorted((self.cache / "text" / "vocab").glob("??/*.npy"))
        for path in vocab:
            flip_signs_of_a_row(path)
        self.rerun_and_check("signs flipped in cached vocabulary embeddings (unit norms kept)", [], "repaired",
                             note=f"{len(vocab)} file(s)")
        counts = sorted((self.cache / "token_counts").glob("*.json"))
        for path in counts:
            document = json.loads(path.read_text())
            table = document["counts"] if "counts" in document else document
            table[next(iter(table))] = 99  # over the limit of 77: a valid spec refused before
            path.write_text(json.dumps(document))
        self.rerun_and_check("a token-count entry edited (99 tokens)", [], "repaired", note=f"{len(counts)} file(s)")
        self._changed_user_image()

    def _model_fault(self, name: str, damage) -> None:
        """Damage the tiny generator and remove some images, so the rerun must generate with it."""
        damage()
        self._clear_images(0.3)
        self.rerun_and_check(name, [], "repaired (rebuilt)", note="30 % of images removed first")

    def _changed_user_image(self) -> None:
        """--images: a file replaced between listing the folder and embedding it."""
        folder = self.work / "user-images"
        folder.mkdir()
        code = USER_IMAGE_TRIAL.replace("FOLDER", repr(str(folder)))
        proc = subprocess.run([sys.executable, "-c", code], env=env_for(self.cache), capture_output=True, text=True,
                              timeout=600)
        outcome = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "crashed: " + proc.stderr[-200:]
        self.rows.append({"fault": "--images: a file replaced between listing and embedding", "exit codes": "-",
                          "expected": "refused (2)", "rerun exit": "-", "repairs reported": "-",
                          "corrupt used": int(outcome == "stored new content under the old key"),
                          "wrong results": int(outcome not in ("refused",)), "damaged left in cache": 0,
                          "temp left after kill": 0, "temp left": len(temp_files(self.cache)), "note": outcome})

    # ------------------------------------------------------------------ issue 28: the call shape

    def rebatch(self) -> None:
        """--batch-size changed between a kill and the resume, a CUDA out-of-memory, another --call-shape."""
        reference = png_bytes(self.work / "reference-cache")
        code = self._stop_at_random(signal.SIGKILL, ["--batch-size", "1"])
        self.rerun_and_check("kill -9 at --batch-size 1, resumed at --batch-size 4 (reference: 2)", [code], "-9",
                             extra=["--batch-size", "4"])
        self._check_pngs(reference)
        self._clear_images(0.5)
        proc = run(self.spec, self.out(), self.cache, python=("-c", OOM_TRIAL))
        said = "names --call-shape: " + str("--call-shape 2" in proc.stderr and "Traceback" not in proc.stderr)
        self.rerun_and_check("CUDA out of memory (simulated) in the third call, half the images removed",
                             [proc.returncode], "2 (stop, no halving)", note=said)
        self._check_pngs(reference)
        self._other_shape()

    def _check_pngs(self, reference: dict) -> None:
        """After a rerun: every cached image byte-identical to the clean reference's (else a wrong result)."""
        row, found = self.rows[-1], png_bytes(self.cache)
        same = sum(found.get(key) == data for key, data in reference.items())
        row["note"] = (row["note"] + "; " if row["note"] else "") + f"PNG bytes as the reference's: {same} of " \
                                                                    f"{len(reference)}"
        if same != len(reference):
            row["wrong results"] = 1

    def _other_shape(self) -> None:
        """--call-shape 2 on the default-shape cache: nothing reused, equal to a clean --call-shape 2 run."""
        shape = ["--call-shape", "2"]
        clean_cache = self.work / "reference-cache-shape-2"
        clean_cache.mkdir()
        (clean_cache / "models").symlink_to(self.cache / "models", target_is_directory=True)
        clean = run(self.spec, self.out(), clean_cache, shape)
        proc = run(self.spec, self.out(), self.cache, shape)
        ok = clean.returncode == proc.returncode == 0
        generated = json.loads(proc.stdout)["counts"]["generated"] if ok else None
        wrong = int(not ok or bool(differences(numbers(json.loads(proc.stdout)), numbers(json.loads(clean.stdout)))))
        same = sum(png_bytes(self.cache).get(k) == v for k, v in png_bytes(clean_cache).items()) if ok else 0
        self.rows.append({"fault": "--call-shape 2 on a cache of default-shape (4) images", "exit codes": "-",
                          "expected": "nothing reused; = a clean --call-shape 2 run", "rerun exit": proc.returncode,
                          "repairs reported": "-", "corrupt used": int(generated != self.images),
                          "wrong results": wrong, "damaged left in cache": len(bad_pngs(self.cache)),
                          "temp left after kill": 0, "temp left": len(temp_files(self.cache)),
                          "note": f"generated {generated} of {self.images}; PNG bytes as the clean shape-2 run's: "
                                  f"{same} of {self.images}"})

    # ------------------------------------------------------------------ issue 28: rerun the same command

    def publish(self) -> None:
        """Kills while the run folder is published, with report.html (so the report is written too)."""
        home = self.work / "publish"
        home.mkdir()
        out = home / "run"
        killed = self._publishing("report", out, [])
        self._same_command("SIGKILL while report.html is written (--out)", killed, home, out, [],
                           f"files in --out after the kill: {len(visible(out))}")
        killed = self._publishing("report", None, [], cwd=home / "no-out")
        runs = home / "no-out" / "runs"
        left = visible(runs)
        self._same_command("SIGKILL while report.html is written (no --out)", killed, runs, None, [],
                           f"folders left in runs/ by the kill: {len(left)}", cwd=home / "no-out")
        killed = self._publishing("replace", out, ["--replace"])
        self._same_command("SIGKILL between the two renames of --replace (no RENAME_EXCHANGE)", killed, home, out,
                           ["--replace"], f"--out there after the kill: {out.exists()} (the next start puts it back)")
        (out / "notes.txt").write_text("the user's")
        proc = subprocess.run(self._cmd(out, ["--replace"]), env=env_for(self.cache), capture_output=True, text=True,
                              timeout=900)
        kept = (out / "notes.txt").is_file() and (out / "results.json").is_file()
        self.rows.append({"fault": "--replace on a run folder holding a file ldmprobe did not write",
                          "exit codes": proc.returncode, "expected": "refused (2), nothing removed", "rerun exit": "-",
                          "repairs reported": "-", "corrupt used": 0, "wrong results": int(proc.returncode != 2 or not kept),
                          "damaged left in cache": 0, "temp left after kill": 0, "temp left": len(hidden(home)),
                          "note": f"the file and the run kept: {kept}; names it: {'notes.txt' in proc.stderr}"})

    def _cmd(self, out: Path | None, extra, python=("-m", "ldmprobe")) -> list[str]:
        """The sweep command with its report (no --no-report); without --out when ``out`` is None."""
        cmd = [a for a in sweep_cmd(self.spec, out or Path("."), extra, python) if a != "--no-report"]
        if out is None:
            at = cmd.index("--out")
            del cmd[at:at + 2]
        return cmd

    def _publishing(self, where: str, out: Path | None, extra, cwd: Path | None = None) -> int:
        if cwd is not None:
            cwd.mkdir(parents=True, exist_ok=True)
        cmd = self._cmd(out, extra, python=("-c", KILLED_PUBLISHING, where))
        return subprocess.run(cmd, env=env_for(self.cache), capture_output=True, text=True, timeout=900,
                              cwd=cwd).returncode

    def _same_command(self, fault: str, killed: int, parent: Path, out: Path | None, extra, note: str,
                      cwd: Path | None = None) -> None:
        """The same command after the kill: exit 0, the run folder complete, its numbers the reference's,
        and nothing hidden left beside it."""
        proc = subprocess.run(self._cmd(out, extra), env=env_for(self.cache), capture_output=True, text=True,
                              timeout=900, cwd=cwd)
        folders = [parent / name for name in visible(parent)] if out is None else [out]
        complete = proc.returncode == 0 and len(folders) == 1 and all(
            (folders[0] / name).is_file() for name in ("results.json", "report.html"))
        wrong = int(not complete or bool(differences(numbers(json.loads(proc.stdout)), self.reference)))
        self.rows.append({"fault": fault, "exit codes": 128 - killed if killed < 0 else killed, "expected": "-9",
                          "rerun exit": proc.returncode, "repairs reported": "-", "corrupt used": 0,
                          "wrong results": wrong, "damaged left in cache": len(bad_pngs(self.cache)),
                          "temp left after kill": "-", "temp left": len(hidden(parent)),
                          "note": f"{note}; same command works: {bool(complete)}; run folders: {len(folders)}"})

    def full_disk(self) -> None:
        for size in ("128k", "440k"):  # refused before any work; fills while generating
            self._full_cache(size)
        self._full_run_folder()

    def _mount(self, name: str, size: str) -> Path | None:
        mount = self.work / name
        mount.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True).returncode != 0:
            self.rows.append({"fault": f"full disk ({name})", "note": "skipped: this process cannot mount a tmpfs"})
            return None
        return mount

    def _full_cache(self, size: str) -> None:
        """The cache on a small disk; the rerun goes on with a copy of it on a large one."""
        mount = self._mount(f"small-cache-{size}", size)
        if mount is None:
            return
        try:
            small = mount / "cache"
            small.mkdir()
            (small / "models").symlink_to(self.cache / "models", target_is_directory=True)
            proc = run(self.spec, self.out(), small)
            said = ("before any work" if "not enough disk space" in proc.stderr else
                    "disk named full" if "is full" in proc.stderr else "no disk message")
            said += f"; names the full disk ({mount.name}): {str(mount) in proc.stderr}"
            said += "; names '.': " + str("holding . " in proc.stderr)
            bigger = self.work / f"cache-after-{size}"
            shutil.copytree(small, bigger, symlinks=True)
            made = sum(1 for _ in (bigger / "images").rglob("*.png")) if (bigger / "images").exists() else 0
            self.rerun_and_check(f"full disk: cache on a {size} tmpfs", [proc.returncode], "2 before work, or 1",
                                 cache=bigger, note=f"{said}; {made} image(s) made before")
        finally:
            subprocess.run(["umount", str(mount)], capture_output=True)

    def _full_run_folder(self) -> None:
        mount = self._mount("small-out", "1m")
        if mount is None:
            return
        try:
            # the run folder on the small disk, the cache warm
            out = mount / "run"
            proc = subprocess.run(sweep_cmd(self.spec, out), env=env_for(self.cache), capture_output=True,
                                  text=True, timeout=900)
            left = list(mount.iterdir())
            self.rerun_and_check("full disk: run folder", [proc.returncode], "1 or 2 (named)",
                                 note=f"names the run folder: {str(out) in proc.stderr}; left on that disk: {len(left)}")
        finally:
            subprocess.run(["umount", str(mount)], capture_output=True)


def table(rows: list[dict]) -> str:
    columns = ["fault", "exit codes", "expected", "rerun exit", "repairs reported", "corrupt used", "wrong results",
               "damaged left in cache", "temp left after kill", "temp left", "cache verify", "note"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="folder to work in (default: a temp folder)")
    parser.add_argument("--only", default="kills,signals,flips,integrity2,rebatch,publish,disk",
                        help="comma-separated groups to run (default: all): kills, signals, flips, integrity2, "
                             "rebatch, publish, disk")
    args = parser.parse_args()
    # Started in the background (``nohup ... &``), this process ignores SIGINT and its sweeps would
    # inherit that (a sweep then rightly ignores SIGINT too: the SIGINT row read exit 0, not 130).
    # A handled signal is reset to the default in a child, so the sweeps see SIGINT as from a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    groups = set(args.only.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="ldmprobe-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    bench = Bench(work, args.seed)
    bench.warm_models()
    bench.clean_reference()
    print(f"reference: {bench.images} images, clean run", file=sys.stderr)
    for group, run in (("kills", lambda: bench.kills(args.kills)), ("signals", bench.signals), ("flips", bench.flips),
                       ("integrity2", bench.integrity2), ("rebatch", bench.rebatch), ("publish", bench.publish),
                       ("disk", bench.full_disk)):
        if group in groups:
            run()
    print(table(bench.rows))
    totals = {k: sum(int(r.get(k) or 0) for r in bench.rows) for k in ("corrupt used", "wrong results", "temp left")}
    print(f"\ntotals: corrupt files used {totals['corrupt used']}, wrong results {totals['wrong results']}, "
          f"temp files left {totals['temp left']} ({time.time() - t0:.0f} s, work folder {work})")
    return 0 if not any(totals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
