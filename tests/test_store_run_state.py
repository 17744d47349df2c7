"""The store's per-run state: repairs counted from many threads, one summary line, and a fresh
state per command (what one command found is not reported by the next)."""

from __future__ import annotations

import threading

from click.testing import CliRunner

from ldmprobe.cli.main import main
from ldmprobe.store import run_state
from ldmprobe.store.packed_cache import identity_namespace


def test_repairs_from_many_threads_are_counted_once_each():
    state = run_state.RunState()

    def work():
        for _ in range(500):
            state.record_repair("images", "digest mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state.record_repair("token counts", "unreadable", detail="a detail")
    state.record_repair("token counts", "unreadable", detail="a detail")  # a detail is said once
    line = state.repair_summary(reset=False)
    assert line == ("2002 cached value(s) failed their integrity check and were treated as missing "
                    "(remade where this run needed them): images 2000, token counts 2. a detail.")
    assert state.repair_summary() == line and state.repair_summary() is None  # reset after the first


def test_each_command_starts_its_own_state(tmp_path, monkeypatch):
    monkeypatch.setenv("LDMPROBE_CACHE", str(tmp_path / "cache"))
    before = run_state.begin_run()
    before.record_repair("images", "unreadable")
    namespace = identity_namespace({"model": "x"})
    assert run_state.current is before and before.namespace_identity(namespace) == {"model": "x"}
    result = CliRunner().invoke(main, ["cache", "info"])
    assert result.exit_code == 0, result.output
    assert "failed their integrity check" not in result.output  # the earlier state's repair is not this command's
    assert run_state.current is not before and run_state.current.namespace_identity(namespace) is None
    assert before.repair_summary() is not None  # left as it was


def _flip(path, offset: int, n: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        data = fh.read(n)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in data))


def test_a_bad_packed_value_met_by_several_stores_is_counted_once(tmp_path):
    """A sweep opens the image embeddings twice (planning, then embedding); a bad value stays in
    its shard, so both meet it: one bad value is one repair in the command's line (it said 2)."""
    import numpy as np

    from ldmprobe.store.packed_cache import VerifiedStore

    state = run_state.begin_run()
    keys = [f"{i:064x}" for i in range(5)]
    writer = VerifiedStore("embeddings/x", "image embeddings", root=tmp_path)
    writer.put_many(keys, np.arange(5 * 8, dtype=np.float32).reshape(5, 8))
    writer.close()
    shard = next((tmp_path / "embeddings/x/packed").glob("*.bin"))
    _flip(shard, 1 * 32 + 4, 4)  # the second value
    _flip(shard, 3 * 32 + 4, 4)  # the fourth
    for _ in range(3):  # three readers, each checking every value again
        reader = VerifiedStore("embeddings/x", "image embeddings", root=tmp_path)
        assert reader.has_many(keys).tolist() == [True, False, True, False, True]
        reader.close()
    text = VerifiedStore("text/x", "text embeddings", root=tmp_path)  # the same key in another kind counts
    text.put_many(keys[1:2], np.ones((1, 8), np.float32))
    text.close()
    _flip(next((tmp_path / "text/x/packed").glob("*.bin")), 4, 4)
    assert VerifiedStore("text/x", "text embeddings", root=tmp_path).get_many(keys[1:2]) == [None]
    assert state.repair_summary() == ("3 cached value(s) failed their integrity check and were treated as missing "
                                      "(remade where this run needed them): image embeddings 2, text embeddings 1.")
    reader = VerifiedStore("embeddings/x", "image embeddings", root=tmp_path)  # after the line: counted anew
    reader.get_many(keys)
    assert state.repair_summary().endswith("image embeddings 2.")
