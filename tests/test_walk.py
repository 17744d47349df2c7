"""scripts/walk.py: entries, stages and returns on a tiny synthetic package, and no entry for code
that runs as part of an import (module body, class bodies, module-level calls), even when the
import is inside a function."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import textwrap
from pathlib import Path

import pytest

WALK = Path(__file__).resolve().parents[1] / "scripts" / "walk.py"
PKG = "walkpkg_synthetic"

FILES = {
    "__init__.py": "",
    "usecases/__init__.py": "",
    "usecases/run.py": """
        from walkpkg_synthetic.engine import work

        def go():
            work.step()
            return work.again()
    """,
    "engine/__init__.py": "",
    "engine/helper.py": """
        def make():
            return 1

        def wrap(fn):
            return fn
    """,
    "engine/work.py": """
        def step():
            from walkpkg_synthetic.engine import lazy  # first import: runs lazy's body here
            try:
                from walkpkg_synthetic.engine import broken  # noqa: F401  an import that fails
            except ImportError:
                pass
            return lazy.use()

        def again():
            from walkpkg_synthetic.engine import lazy  # already imported: nothing runs
            return lazy.use()
    """,
    "engine/lazy.py": """
        from walkpkg_synthetic.engine import helper

        TABLE = helper.make()            # a module-level call

        class Thing:                     # a class body
            X = helper.make()

            @helper.wrap                 # a decorator applied at import
            def method(self):
                return 0

        def use():
            return TABLE + Thing.X
    """,
    "engine/broken.py": """
        from walkpkg_synthetic.engine import helper

        class Half:
            Y = helper.make()

        raise ImportError("half-imported on purpose")
    """,
}


@pytest.fixture
def walk_module(tmp_path, monkeypatch):
    for rel, text in FILES.items():
        path = tmp_path / PKG / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.spec_from_file_location("walk_under_test", WALK)
    walk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(walk)
    monkeypatch.setattr(walk, "PACKAGE", str(tmp_path / PKG) + os.sep)
    yield walk
    for name in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".")]:
        del sys.modules[name]


def _walk(walk, by_path: bool = True) -> dict:
    run = importlib.import_module(f"{PKG}.usecases.run")  # imported before the walk, as the CLI is
    recorder = walk.Walk(by_path=by_path)
    sys.setprofile(recorder.hook)
    try:
        result = run.go()
    finally:
        sys.setprofile(None)
    assert result == 2
    return recorder.report()


def test_import_inside_a_function_is_not_an_entry(walk_module):
    out = _walk(walk_module)
    # usecases.run enters engine.work twice (step, again); work enters lazy once per call, by
    # one path (work.step -> use) and another (work.again -> use). helper is only ever called
    # while lazy or broken is being imported, so it is never entered.
    assert out["order"] == ["usecases.run", "engine.work", "engine.lazy"]
    assert [s["stage"] for s in out["stages"]] == ["usecases.run:engine.work.step",
                                                   "usecases.run:engine.work.again"]
    assert [s["entered"] for s in out["stages"]] == [["engine.work", "engine.lazy"]] * 2
    assert [s["modules"] for s in out["stages"]] == [2, 2]
    assert out["returns_in_stages"] == 0
    assert out["paths"] == 5   # go; step, again; step->use, again->use
    assert out["returns_whole_run"] == 2   # engine.work by 2 paths, engine.lazy by 2 paths


def test_counting_every_call_after_an_import(walk_module):
    """The import leaves nothing behind: the calls after it are all counted (``--calls``)."""
    out = _walk(walk_module, by_path=False)
    assert out["entries"] == 5
    assert out["order"] == ["usecases.run", "engine.work", "engine.lazy"]
