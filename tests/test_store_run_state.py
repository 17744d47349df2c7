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
