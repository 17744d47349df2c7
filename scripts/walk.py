"""Walk one command through the package: which modules it enters, and how often it comes back.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python scripts/walk.py -- sweep SPEC --pipeline tiny --measurer tiny --out DIR
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python scripts/walk.py --json -- trace SPEC ...

Runs ``ldmprobe ARGS`` in this process under a profiler hook (issue 31's measure of "back and
forth"). A module is *entered* when one of its functions is called while no frame of it is on
the stack (calls within a module, and callbacks into a module that is still running, are not
entries). Import-time code is not counted: nothing that runs under an import (the module body,
its class bodies, decorators and module-level calls, and any module that import imports in
turn) is an entry, whether the import is at the top of a file or inside a function.

A *stage* is one call from a use-case module (``ldmprobe/usecases/``, ``ldmprobe/cli/``, and
``ldmprobe/api.py``, the library's face of the same use cases, which the CLI calls) into
a module outside them: everything that call runs belongs to that stage. Within a stage, an
entry into a module it had already left is a *return*. Loops make the same entry many times
(one per image), so returns are counted by *path*: an entry is identified by the calling
function and the function entered, and a module reached by k different paths in one stage
counts k - 1 returns, however often each path runs (``--calls`` counts every entry instead).
The use case calling its stages is not counted. The report lists per stage the modules entered
and the returns, then the totals: modules visited, returns within stages, and the returns
with no stage split (paths into a module beyond its first over the whole run).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PACKAGE = str(ROOT / "ldmprobe") + os.sep
#: Frames of the import system: everything below one of them runs as part of an import.
IMPORT_FILES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")


def module_of(filename: str) -> str | None:
    if not filename.startswith(PACKAGE):
        return None
    return filename[len(PACKAGE):].removesuffix(".py").replace(os.sep, ".")


def is_usecase(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in ("usecases", "cli", "api")


class Walk:
    def __init__(self, by_path: bool = True) -> None:
        self.by_path = by_path
        self._ids = itertools.count()
        self.active: Counter[str] = Counter()
        self.stack: list[tuple[str, str]] = []   # (module, function) of ldmprobe frames, innermost last
        self.stages: list[dict] = []
        self.stage: dict | None = None
        self.stage_depth = -1
        self.all_entries: dict[str, set] = defaultdict(set)
        self.order: list[str] = []
        self._module_cache: dict[str, str | None] = {}
        self.importing = 0   # import-system and module-body frames on the stack

    def _module(self, code) -> str | None:
        name = code.co_filename
        if name not in self._module_cache:
            self._module_cache[name] = module_of(name)
        return self._module_cache[name]

    def hook(self, frame, event, arg) -> None:  # noqa: ARG002
        if event == "call":
            code = frame.f_code
            if code.co_name == "<module>" or code.co_filename in IMPORT_FILES:
                self.importing += 1
                return
            module = self._module(code)
            if module is None or self.importing:
                return
            caller = self.stack[-1] if self.stack else (None, None)
            if self.active[module] == 0:
                self._enter(module, caller, code.co_name)
            self.active[module] += 1
            self.stack.append((module, code.co_name))
        elif event == "return":
            code = frame.f_code
            if code.co_name == "<module>" or code.co_filename in IMPORT_FILES:
                self.importing = max(0, self.importing - 1)
                return
            module = self._module(code)
            if module is None or self.importing or not self.stack:
                return
            self.stack.pop()
            self.active[module] -= 1
            if self.stage is not None and len(self.stack) < self.stage_depth:
                self.stage = None

    def _enter(self, module: str, caller: tuple, function: str) -> None:
        path = (caller, function) if self.by_path else next(self._ids)
        self.all_entries[module].add(path)
        if module not in self.order:
            self.order.append(module)
        if self.stage is None and is_usecase(caller[0]) and not is_usecase(module):
            self.stage = {"name": f"{caller[0]}:{module}.{function}", "entries": defaultdict(set)}
            self.stage_depth = len(self.stack) + 1
            self.stages.append(self.stage)
        if self.stage is not None:
            self.stage["entries"][module].add(path)

    def report(self) -> dict:
        stages = []
        for s in self.stages:
            returns = {m: len(n) - 1 for m, n in s["entries"].items() if len(n) > 1}
            stages.append({"stage": s["name"], "modules": len(s["entries"]), "entered": list(s["entries"]),
                           "returns": sum(returns.values()), "returned_to": returns})
        return {
            "modules": len(self.order),
            "paths" if self.by_path else "entries": sum(len(v) for v in self.all_entries.values()),
            "returns_in_stages": sum(s["returns"] for s in stages),
            "returns_whole_run": sum(len(n) - 1 for n in self.all_entries.values()),
            "stages": stages,
            "order": self.order,
        }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print the walk as JSON")
    ap.add_argument("--calls", action="store_true", help="count every entry, not distinct paths")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="-- then the ldmprobe command line")
    ns = ap.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    from ldmprobe.cli.main import main as cli

    walk = Walk(by_path=not ns.calls)
    threading.setprofile(walk.hook)
    sys.setprofile(walk.hook)
    code = 0
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # the command's data is not the walk's
        try:
            cli.main(args=args, prog_name="ldmprobe", standalone_mode=False)
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
    out = walk.report()
    if ns.json:
        print(json.dumps(out, indent=1))
    else:
        for s in out["stages"]:
            back = ", ".join(f"{m} +{n}" for m, n in sorted(s["returned_to"].items(), key=lambda x: -x[1]))
            print(f"{s['stage']}: {s['modules']} modules, {s['returns']} returns" + (f" ({back})" if back else ""))
        counted = "paths" if "paths" in out else "entries"
        print(f"\nmodules {out['modules']}, {counted} {out[counted]}, returns within stages "
              f"{out['returns_in_stages']}, returns over the whole run {out['returns_whole_run']}")
    return code


if __name__ == "__main__":
    sys.exit(main())
