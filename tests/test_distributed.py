"""Sweeps under torchrun (gloo on CPU, tiny models): same results at any world size, resume at another.

The launches are whole ``torchrun`` jobs (``python -m torch.distributed.run --standalone``, so
each picks a free port), a few seconds of imports per rank; world size 1 runs in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from ldmprobe.engine import distributed
from ldmprobe.cli.main import main

pytestmark = pytest.mark.slow

SPEC = """\
name = "mini"
templates = ["a photo of a {} car", "a {} house at night"]
baseline = ""
terms = ["red", "blue"]
probes = ["fire", "ocean", "tree"]
seeds = SEEDS
"""
FLAGS = ["--pipeline", "tiny", "--measurer", "tiny", "--steps", "2", "--format", "json",
         "--permutations", "99", "--bootstrap", "99", "--no-report"]
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def make_cache(tmp_path, cache_root, tiny_generator, tiny_measurer, monkeypatch):
    """Empty image/embedding caches sharing the session's built tiny models."""
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)

    def make(name: str) -> Path:
        root = tmp_path / name
        root.mkdir()
        (root / "models").symlink_to(cache_root / "models", target_is_directory=True)
        return root

    return make


def spec_file(tmp_path: Path, seeds: int = 2, text: str = SPEC) -> Path:
    path = tmp_path / f"spec-{seeds}.toml"
    path.write_text(text.replace("SEEDS", str(seeds)))
    return path


def torchrun_cmd(nproc: int, *args, script: str | None = None, launcher: str = "torch.distributed.run") -> list[str]:
    """A torchrun job; ``launcher="ldmprobe.cli.launch"`` is ``ldmprobe-torchrun``."""
    target = [script] if script else ["-m", "ldmprobe"]
    return [sys.executable, "-m", launcher, "--standalone", "--nproc_per_node", str(nproc),
            *target, "sweep", *map(str, args), *FLAGS]


def launch(nproc: int, cache: Path, *args, timeout: float = 240) -> tuple[dict, str]:
    env = dict(os.environ, LDMPROBE_CACHE=str(cache))
    proc = subprocess.run(torchrun_cmd(nproc, *args), env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout), proc.stderr  # one document: only rank 0 writes stdout


def in_process(cache: Path, monkeypatch, *args) -> dict:
    monkeypatch.setenv("LDMPROBE_CACHE", str(cache))
    result = CliRunner().invoke(main, ["sweep", *map(str, args), *FLAGS])
    assert result.exit_code == 0, (result.stderr, result.exception)
    return json.loads(result.stdout)


def n_done(cache: Path) -> int:
    images = cache / "images"
    return len(list(images.rglob("*.png"))) + len(list(images.rglob("*.failed.json"))) if images.is_dir() else 0


def items_without_cached(out: Path) -> list[str]:
    lines = []
    for line in (out / "items.jsonl").read_text().splitlines():
        record = json.loads(line)
        record.pop("cached")
        lines.append(json.dumps(record, sort_keys=True))
    return sorted(lines)


def comparable(value):
    """Order-free form of the per-term statistics: lists keyed by what they describe."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(v, dict) and "term" in v for v in value):
            return {v["term"]: comparable(v) for v in value}
        if value and all(isinstance(v, dict) and "probe" in v for v in value):
            return {v["probe"]: comparable(v) for v in value}
        if value and all(isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) for v in value):
            return Neighbours({word: score for word, score in value})
        return [comparable(v) for v in value]
    return value


class Neighbours(dict):
    """A top-k (word, score) list (compared whole, in order)."""


def assert_close(a, b, path="terms"):
    """Equal structure and equal values, floats included (every mismatch listed at once).

    Every model call has a fixed shape (issue 28), so an image or embedding made by another
    rank, in other company or on a resume is bit-identical: no tolerance.
    """
    found: list = []
    _mismatches(a, b, path, found)
    assert not found, found


def _mismatches(a, b, path: str, found: list) -> None:
    if isinstance(a, Neighbours):
        if list(a.items()) != list(b.items()):  # same words, same order, same scores
            found.append((path, a, b))
    elif isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            found.append((path, "keys"))
            return
        for key in a:
            _mismatches(a[key], b[key], f"{path}/{key}", found)
    elif isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            found.append((path, "length"))
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _mismatches(x, y, f"{path}/{i}", found)
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            found.append((path, a, b))
        elif a != b and not (a != a and b != b):  # exact; both nan counts as equal
            found.append((path, a, b))
    elif a != b:
        found.append((path, a, b))


def png_bytes(cache: Path) -> dict:
    return {p.stem: p.read_bytes() for p in (cache / "images").glob("??/*.png")}


def assert_same_results(doc_a: dict, out_a: Path, doc_b: dict, out_b: Path) -> None:
    assert items_without_cached(out_a) == items_without_cached(out_b)
    assert_close(comparable(doc_a["terms"]), comparable(doc_b["terms"]))


# ----------------------------------------------------------------------------- without a launch


def test_launch_env_and_disjoint_shares():
    assert distributed.launch_env({}) is None
    assert distributed.launch_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert distributed.launch_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == (3, 4, 1)
    with pytest.raises(distributed.BadInputError):
        distributed.launch_env({"WORLD_SIZE": "2", "RANK": "2"})
    for n_items in (0, 1, 2, 7, 12):
        for world in (1, 2, 3, 8):
            items = list(range(n_items))
            shares = [distributed.shard(items, rank, world) for rank in range(world)]
            assert sorted(x for share in shares for x in share) == items  # none twice, none skipped
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
    keyed = [SimpleNamespace(key=f"k{i}") for i in range(10)]
    groups = {f"k{i}": i // 4 for i in range(10)}  # calls of 4: groups 0, 0, 0, 0, 1, 1, 1, 1, 2, 2
    shares = [distributed.shard(keyed[::-1], rank, 2, groups) for rank in range(2)]
    assert [[x.key for x in share] for share in shares] == [
        ["k9", "k8", "k3", "k2", "k1", "k0"], ["k7", "k6", "k5", "k4"]]  # whole groups, in the given order


def test_each_rank_gets_its_own_gpu(monkeypatch):
    import torch

    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    ctx = distributed.RankContext(rank=3, world_size=4, local_rank=3)
    assert ctx.device("cuda") == "cuda:1" and chosen == [1]  # 2 ranks per GPU when there are fewer GPUs
    assert ctx.device("cpu") == "cpu" and ctx.device("cuda:0") == "cuda:0" and chosen == [1]
    assert distributed.RankContext().device("cuda") == "cuda"


def test_plain_process_is_rank_0_of_1_without_torch_distributed():
    code = ("import sys\nfrom ldmprobe.engine import distributed\nc = distributed.setup()\n"
            "assert (c.rank, c.world_size, c.is_main, c.distributed) == (0, 1, True, False)\n"
            "assert c.device('cuda') == 'cuda' and c.shard([1, 2]) == [1, 2] and c.broadcast(5) == 5\n"
            "assert c.all_gather('x') == ['x'] and c.counter('done') is None\n"
            "c.barrier(); c.report('finished'); c.wait_for_ranks(); c.close()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_waiting_ranks_name_a_failed_or_silent_rank():
    import torch.distributed as dist

    def context(store, rank=0, timeout_s=0.3):
        return distributed.RankContext(rank=rank, world_size=3, timeout_s=timeout_s, store=dist.PrefixStore("t/", store))

    store = dist.HashStore()
    rank0, rank1, rank2 = (context(store, r) for r in range(3))
    for ctx in (rank0, rank1, rank2):
        ctx.report("finished")
    rank0.wait_for_ranks(interval=0.01)  # all finished: returns at once

    store = dist.HashStore()
    rank0, rank1 = context(store, 0), context(store, 1)
    rank0.report("finished")
    rank1.report("failed", error="CUDA out of memory")
    with pytest.raises(distributed.RankFailure, match=r"rank 1 of 3 failed \(rank 1: CUDA out of memory\)"):
        rank0.wait_for_ranks(interval=0.01)

    store = dist.HashStore()
    rank0, rank1 = context(store, 0), context(store, 1)
    rank0.report("finished")
    rank1.report("finished")
    polls = []
    start = time.monotonic()
    with pytest.raises(distributed.RankFailure, match=r"rank 2 of 3 did not finish .*LDMPROBE_RANK_TIMEOUT"):
        rank0.wait_for_ranks(poll=lambda: polls.append(1), interval=0.01)
    assert 0.3 <= time.monotonic() - start and polls  # it waited; no upper bound (a busy machine is slow)


# ----------------------------------------------------------------------------- torchrun jobs


def test_world_sizes_1_2_3_give_the_same_sweep(tmp_path, make_cache, monkeypatch):
    spec = spec_file(tmp_path)
    caches = {1: make_cache("c1")}
    single = in_process(caches[1], monkeypatch, spec, "--out", tmp_path / "w1")
    docs = {1: single}
    for world in (2, 3):
        cache = caches[world] = make_cache(f"c{world}")
        doc, err = launch(world, cache, spec, "--out", tmp_path / f"w{world}")
        assert doc["provenance"]["distributed"]["world_size"] == world
        assert doc["counts"] == single["counts"] == {"planned": 12, "unique": 12, "generated": 12, "cached": 0,
                                                      "failed": 0, "flagged": 0}
        assert n_done(cache) == 12
        assert err.count("tiny models have random weights") == 1  # other ranks stay quiet
        assert err.count("run folder:") == 1
        docs[world] = doc
    keys = {w: {json.loads(line)["key"] for line in (tmp_path / f"w{w}" / "items.jsonl").read_text().splitlines()}
            for w in docs}
    assert keys[1] == keys[2] == keys[3] and len(keys[1]) == 12
    for world in (2, 3):
        assert_same_results(docs[1], tmp_path / "w1", docs[world], tmp_path / f"w{world}")
        assert png_bytes(caches[world]) == png_bytes(caches[1])  # every image byte for byte (issue 28)


def test_fewer_items_than_ranks(tmp_path, make_cache):
    spec = spec_file(tmp_path, 1, 'name = "one"\ntemplates = ["a {} car"]\nbaseline = ""\nterms = ["red"]\n'
                                  'probes = ["fire", "tree"]\nseeds = SEEDS\n')
    cache = make_cache("c")
    doc, _ = launch(3, cache, spec, "--out", tmp_path / "w3")
    assert doc["counts"]["generated"] == 2 and doc["counts"]["planned"] == 2 and n_done(cache) == 2
    assert doc["terms"][0]["n_pairs"] == 1


def test_killed_two_rank_run_resumes_with_one_and_with_three_ranks(tmp_path, make_cache, monkeypatch):
    spec = spec_file(tmp_path, 4)  # 24 images
    cache = make_cache("c2")
    env = dict(os.environ, LDMPROBE_CACHE=str(cache))
    proc = subprocess.Popen(torchrun_cmd(2, spec, "--out", tmp_path / "killed", "--batch-size", "1"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while n_done(cache) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the launching terminal
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and out == "", err[-3000:]
    done = n_done(cache)
    assert 4 <= done < 24, err[-3000:]
    from PIL import Image

    for png in (cache / "images").rglob("*.png"):  # nothing half-written
        Image.open(png).load()

    copies = {}
    for world in (1, 3):
        copies[world] = tmp_path / f"c{world}"
        shutil.copytree(cache, copies[world], symlinks=True)
    one = in_process(copies[1], monkeypatch, spec, "--out", tmp_path / "r1")
    three, _ = launch(3, copies[3], spec, "--out", tmp_path / "r3")
    for doc in (one, three):
        assert doc["counts"]["generated"] == 24 - done and doc["counts"]["cached"] == done
    assert n_done(copies[1]) == n_done(copies[3]) == 24
    assert_same_results(one, tmp_path / "r1", three, tmp_path / "r3")
    assert png_bytes(copies[1]) == png_bytes(copies[3])  # the resumes made every missing image alike


DYING_RANK = """\
import os, sys
from ldmprobe.engine import generate
from ldmprobe.cli.main import run

if os.environ["RANK"] == "1":
    real, calls = generate.BatchGenerator.call, []

    def generate_then_crash(self, layout):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("simulated crash")
        return real(self, layout)

    generate.BatchGenerator.call = generate_then_crash
sys.exit(run(sys.argv[1:]))
"""


def test_a_dying_rank_fails_the_job_and_names_itself(tmp_path, make_cache):
    spec = spec_file(tmp_path, 4)  # 24 images: calls of 4 in groups 0-5, rank 1 makes groups 1, 3 and 5
    cache = make_cache("c")
    script = tmp_path / "dying_rank.py"
    script.write_text(DYING_RANK)
    env = dict(os.environ, LDMPROBE_CACHE=str(cache))
    proc = subprocess.run(torchrun_cmd(2, spec, "--out", tmp_path / "w2", "--batch-size", "2", script=str(script),
                                       launcher="ldmprobe.cli.launch"),
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr[-3000:]
    assert "rank 1 of 2 failed: RuntimeError: simulated crash" in proc.stderr, proc.stderr[-3000:]
    # the launcher's last line names the rank that failed, not the one it stopped afterwards
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ldmprobe-torchrun: rank 1 of 2 failed (exit 1)"), last
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "w2" / "results.json").exists()
    # rank 1's first call (the plan's images 4-7, group 1) stays cached
    dry = CliRunner().invoke(main, ["sweep", str(spec), "--pipeline", "tiny", "--measurer", "tiny", "--steps", "2",
                                    "--dry-run", "--format", "json"], env={"LDMPROBE_CACHE": str(cache)})
    plan = json.loads(dry.stdout)
    keys = list(dict.fromkeys(item["key"] for item in plan["items"]))  # the plan's unique images, in order
    cached = {item["key"] for item in plan["items"] if item["cached"]}
    assert set(keys[4:8]) <= cached and not set(keys[12:16]) & cached and len(cached) < 24


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_launcher_stopped_by_a_signal_ends_every_rank_cleanly(tmp_path, make_cache, signum, code):
    """``ldmprobe-torchrun`` stopped by SIGTERM (a scheduler) or SIGINT (Ctrl-C): 143 / 130, every
    rank says it stopped and which rank it is, no traceback, and nothing half-written."""
    spec = spec_file(tmp_path, 4)  # 24 images
    cache = make_cache("c")
    env = dict(os.environ, LDMPROBE_CACHE=str(cache))
    proc = subprocess.Popen(torchrun_cmd(2, spec, "--out", tmp_path / "w", "--batch-size", "1",
                                         launcher="ldmprobe.cli.launch"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 180
    while n_done(cache) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.kill(proc.pid, signum)  # the launcher only, as a scheduler does; it stops the ranks
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code and out == "", err[-3000:]
    for rank in (0, 1):
        assert f"rank {rank} of 2: Interrupted" in err or f"rank {rank} of 2: interrupted" in err, err[-3000:]
    assert f"ldmprobe-torchrun: stopped by {signal.Signals(signum).name}" in err
    assert "Traceback" not in err
    assert not list(cache.rglob("*.tmp")), "temp files left"
    from PIL import Image

    for png in (cache / "images").rglob("*.png"):
        Image.open(png).load()


def test_launcher_names_the_failed_rank_and_exits_with_its_code():
    from ldmprobe.cli.launch import failure_summary

    stopped, crashed = SimpleNamespace(exitcode=-15, timestamp=1), SimpleNamespace(exitcode=2, timestamp=5)
    line, code = failure_summary({0: stopped, 3: crashed}, 4)
    assert code == 2 and line.startswith("rank 3 of 4 bad input (exit 2); rank 0 killed by SIGTERM (exit 143)")
    line, code = failure_summary({1: SimpleNamespace(exitcode=130, timestamp=2),
                                  0: SimpleNamespace(exitcode=130, timestamp=1)})
    assert code == 130 and line.startswith("rank 0 interrupted (exit 130); rank 1 interrupted") and "resume" in line
    line, code = failure_summary({2: SimpleNamespace(exitcode=-9, timestamp=1)}, 3)
    assert code == 137 and "rank 2 of 3 killed by SIGKILL (exit 137)" in line
