"""Issue 17: temp files and staging folders left by killed processes are removed at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from ldmprobe.store.cleanup import STALE_AFTER_S, remove_stale_temp
from ldmprobe.store.files import atomic_write_bytes, staging_dir


def _touch(path, age: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(b"partial")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_stale_temp_files_and_staging_folders_are_removed(tmp_path):
    root = tmp_path / "cache"
    hour = STALE_AFTER_S
    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    old_image_tmp = _touch(root / "images/ab" / f".abcd.png.{dead}-x1y2.tmp", 2 * hour)
    old_legacy_tmp = _touch(root / "embeddings/ns/ab" / ".abcd.npy.q8w9e7.tmp", 2 * hour)  # before pids were named
    fresh_tmp = _touch(root / "images/ab" / f".efgh.png.{dead}-aaaa.tmp", 60)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held_tmp = _touch(root / "images/cd" / f".cdef.png.{live.pid}-bbbb.tmp", 2 * hour)
        staging = root / "models" / f".tiny-generator-v1.{dead}-zz"
        _touch(staging / "unet" / "weights.safetensors", 2 * hour)
        os.utime(staging / "unet", (time.time() - 2 * hour,) * 2)
        os.utime(staging, (time.time() - 2 * hour,) * 2)
        building = root / "models" / f".tiny-measurer-v1.{dead}-yy"
        _touch(building / "config.json", 2 * hour)
        _touch(building / "weights.bin", 10)  # still being written: the tree's newest mtime counts
        kept = [_touch(root / "images/ab" / "abcd.png", 2 * hour), _touch(root / ".hidden.cfg", 2 * hour)]

        removed = set(remove_stale_temp(root))
        assert removed == {old_image_tmp, old_legacy_tmp, staging}
        assert fresh_tmp.exists() and held_tmp.exists() and building.exists()
        assert all(p.exists() for p in kept)
        assert remove_stale_temp(root) == []  # at most once per CLEANUP_EVERY_S
    finally:
        live.kill()
        live.wait()
    assert held_tmp in remove_stale_temp(root, every=0)  # its process is gone now


def test_atomic_writes_name_their_process(tmp_path):
    target = tmp_path / "x" / "f.bin"
    atomic_write_bytes(target, b"1")
    assert target.read_bytes() == b"1" and not list(target.parent.glob(".*"))
    staged = staging_dir(tmp_path / "models" / "m")
    assert f".m.{os.getpid()}-" in staged.name
