"""Claims: processes sharing a cache divide the work, and no dead process holds an item forever."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ldmprobe.store.claims import Claims


def test_a_claim_is_exclusive_until_released(tmp_path):
    a, b = Claims(tmp_path), Claims(tmp_path)
    assert a.try_take("k1") and a.try_take("k1")  # already ours
    assert not b.try_take("k1") and b.claimed_by_others("k1")
    a.release(["k1"])
    assert not b.claimed_by_others("k1") and b.try_take("k1")
    b.close()
    assert not list((tmp_path / "claims").glob("*"))


def test_a_dead_local_holder_is_taken_over_at_once(tmp_path):
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(child.stdout)
    claims = Claims(tmp_path)
    claims.dir.mkdir(parents=True)
    claims.path("k").write_text(json.dumps({"host": claims.host, "pid": dead, "since": time.time()}))
    assert claims.stale("k") and not claims.claimed_by_others("k")
    assert claims.try_take("k")
    assert json.loads(claims.path("k").read_text())["pid"] == os.getpid()
    claims.close()


def test_a_silent_remote_holder_is_stale_after_the_timeout(tmp_path):
    path = Claims(tmp_path).path("k")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": "another-node", "pid": 1, "since": 0}))
    touched = path.stat().st_mtime

    def at(seconds_after_touch):  # a clock reading `seconds_after_touch` after the last touch
        return Claims(tmp_path, stale_after=60, clock=lambda: touched + seconds_after_touch)

    assert not at(0).stale("k") and not at(59).stale("k")  # fresh: its holder may be working
    assert at(59).claimed_by_others("k") and not at(59).try_take("k")
    late = at(61)
    assert late.stale("k") and not late.claimed_by_others("k") and late.try_take("k")
    assert json.loads(path.read_text())["pid"] == os.getpid()
    late.close()


def test_the_holder_keeps_its_claims_fresh(tmp_path):
    claims = Claims(tmp_path, heartbeat=0.05, stale_after=0.5)
    assert claims.try_take("k")
    path = claims.path("k")
    old = path.stat().st_mtime - 100
    os.utime(path, (old, old))
    assert Claims(tmp_path, stale_after=0.5).stale("k")  # untouched for 100 s: a silent holder's claim
    deadline = time.monotonic() + 120  # a hang guard only: the heartbeat comes every 0.05 s
    while path.stat().st_mtime == old and time.monotonic() < deadline:
        time.sleep(0.01)
    touched = path.stat().st_mtime
    assert touched > old + 50  # the heartbeat touched it (to now)
    assert not Claims(tmp_path, stale_after=0.5, clock=lambda: touched + 0.4).stale("k")
    assert Claims(tmp_path, stale_after=0.5, clock=lambda: touched + 0.6).stale("k")  # judged by the touch
    claims.close()
    assert not path.exists()


def test_a_claim_records_its_clock_time(tmp_path):
    claims = Claims(tmp_path, clock=lambda: 1234.5)
    assert claims.try_take("k")
    assert json.loads(claims.path("k").read_text()) == {"host": claims.host, "pid": os.getpid(), "since": 1234.5}
    claims.close()


class _Store:
    """A stand-in image store: ``valid`` once saved (here: by the test, as another process would)."""

    def __init__(self, base):
        self.base, self.saved = base, set()

    def valid(self, key):
        return key in self.saved


def test_generation_skips_items_claimed_elsewhere_and_waits_for_them(tmp_path, monkeypatch):
    from ldmprobe.engine import generate
    from ldmprobe.engine.workitems import WorkItem

    items = [WorkItem.__new__(WorkItem) for _ in range(6)]
    for i, item in enumerate(items):
        object.__setattr__(item, "key", f"k{i}")
    store = _Store(tmp_path)
    other = Claims(tmp_path)
    for key in ("k1", "k4"):
        assert other.try_take(key)
    batches = []

    class FakeBatcher:
        shape = 2

        def __init__(self, *args):
            pass

    def fake_make(batcher, batch, store_):
        batches.append([item.key for item in batch])
        if len(batches) == 2:  # meanwhile the other process stores k1 and dies holding k4
            store.saved.add("k1")
            other.release(["k1"])
            other._stop.set()
            other.held.clear()
            Claims(tmp_path).path("k4").write_text(json.dumps({"host": "gone", "pid": 1, "since": 0}))
            old = time.time() - 1000
            os.utime(Claims(tmp_path).path("k4"), (old, old))
        for item in batch:
            store.saved.add(item.key)
        return {item.key for item in batch}

    monkeypatch.setattr(generate, "BatchGenerator", FakeBatcher)
    monkeypatch.setattr(generate, "_make_batch", fake_make)
    progress = []
    made, _ = generate.generate_into_store(None, None, items, store, batch_size=2, on_batch=progress.append,
                                              poll=0.01)
    assert batches[:2] == [["k0", "k3"], ["k2", "k5"]]  # k1, k4 left to their holder (a step: one item per slot)
    assert batches[2:] == [["k4"]]  # its holder stopped: taken over; k1 was stored by it
    assert made == {"k0", "k2", "k3", "k5", "k4"}
    assert sum(progress) == 6  # the one made elsewhere counts as done
    assert not list((tmp_path / "claims").glob("*"))


SPEC = """\
name = "shared"
templates = ["a photo of a {} car", "a {} house at night"]
baseline = ""
terms = ["red", "blue"]
probes = ["fire", "ocean"]
seeds = 8
"""


@pytest.mark.slow
def test_two_sweeps_on_one_cache_make_each_image_once(fresh_cache, tmp_path):
    spec = tmp_path / "shared.toml"
    spec.write_text(SPEC)
    procs = []
    for name in ("a", "b"):
        cmd = [sys.executable, "-m", "ldmprobe", "sweep", str(spec), "--pipeline", "tiny", "--measurer", "tiny",
               "--batch-size", "1", "--out", str(tmp_path / name), "--format", "json", "--no-report",
               "--permutations", "99", "--bootstrap", "99"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "LDMPROBE_CACHE": str(fresh_cache)}))
    docs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=1800)  # a hang guard, not a speed bound (a loaded machine is slow)
            assert proc.returncode == 0, err
            docs.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    generated = [doc["counts"]["generated"] for doc in docs]
    # 2 templates x (baseline + 2 terms) x 8 seeds; without claims each run made all 48 when they overlapped
    assert sum(generated) == 48, generated
    assert len(list((fresh_cache / "images").rglob("*.png"))) == 48
    assert not list((fresh_cache / "images" / "claims").glob("*"))
    assert [t["term"] for t in docs[0]["terms"]] == [t["term"] for t in docs[1]["terms"]]
