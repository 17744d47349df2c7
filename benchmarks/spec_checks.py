"""ldmprobe's spec checks against validation libraries, on import time and on what a user reads.

    python benchmarks/spec_checks.py [--repeats 5]

Issue 31 asks that input checks be chosen "by measured import time and error quality" among
pydantic, msgspec, cattrs and dataclass-driven code. For each one installed (none is a
dependency: ``pip install pydantic msgspec cattrs`` to compare all) this prints:

- **cold start**: a fresh interpreter importing the checker, defining the sweep spec's shape
  and checking one good spec (median of ``--repeats``), and its ratio to ldmprobe's own
  ``load_spec`` measured the same way in the same run;
- **errors**: for each bad spec below, whether the checker refused it at all, and whether its
  message names the spec file, the line, the field, and a fix (an example, a "did you mean",
  or what to add or remove).

The libraries get the spec's whole shape as each expresses it (types, lengths, bounds,
multiples, unknown keys refused); checks no shape states (a template's one ``{}``, duplicates
that differ only in case) would be validators written by hand in any of them, so a library that
does not refuse such a spec is shown as not catching it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
name = "houses"
templates = ["a photo of a {} house", "a {} house"]
baseline = ""
terms = ["fancy", "poor"]
seeds = 4
"""

#: (what is wrong, the field, the spec's text)
BAD = [
    ("templates a string", "templates", GOOD.replace('["a photo of a {} house", "a {} house"]', '"a {} house"')),
    ("no {} in a template", "templates", GOOD.replace('"a {} house"]', '"a house"]')),
    ("a negative seed", "seeds", GOOD.replace("seeds = 4", "seeds = [0, -1]")),
    ("width not a multiple of 8", "width", GOOD + "width = 100\n"),
    ("unknown key 'prompt'", "prompt", GOOD + 'prompt = "a {} house"\n'),
    ("a term twice, in two cases", "terms", GOOD.replace('["fancy", "poor"]', '["fancy", "Fancy"]')),
    ("negative guidance", "guidance", GOOD + "guidance = -2\n"),
    ("no terms", "terms", GOOD.replace('["fancy", "poor"]', "[]")),
    ("a term that is a number", "terms", GOOD.replace('["fancy", "poor"]', '["fancy", 3]')),
]

#: Each checker as a program: define the spec's shape, then ``check(path) -> str | None`` (the
#: message, None when the spec passes). ``{common}`` reads the TOML.
COMMON = "import tomllib\ndef read(path):\n    return tomllib.loads(open(path).read())\n"
CHECKERS = {
    "ldmprobe (hand-written)": """
from ldmprobe.specs.sweep import load_spec
from ldmprobe.errors import SpecError
def check(path):
    try:
        load_spec(path)
    except SpecError as error:
        return str(error)
""",
    "pydantic": """
from typing import Annotated
from pydantic import BaseModel, ConfigDict, Field, ValidationError
Text = Annotated[str, Field(min_length=1)]
Side = Annotated[int, Field(gt=0, multiple_of=8)]
class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: Text
    templates: Annotated[list[Text], Field(min_length=1)]
    baseline: str
    terms: Annotated[list[Text], Field(min_length=1)]
    seeds: Annotated[int, Field(ge=1)] | Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = 4
    guidance: Annotated[float, Field(ge=0)] | None = None
    width: Side | None = None
    height: Side | None = None
def check(path):
    try:
        Spec.model_validate(read(path))
    except ValidationError as error:
        return str(error)
""",
    "msgspec": """
from typing import Annotated
import msgspec
Text = Annotated[str, msgspec.Meta(min_length=1)]
Side = Annotated[int, msgspec.Meta(gt=0, multiple_of=8)]
class Spec(msgspec.Struct, forbid_unknown_fields=True):
    name: Text
    templates: Annotated[list[Text], msgspec.Meta(min_length=1)]
    baseline: str
    terms: Annotated[list[Text], msgspec.Meta(min_length=1)]
    seeds: Annotated[int, msgspec.Meta(ge=1)] | Annotated[list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(min_length=1)] = 4
    guidance: Annotated[float, msgspec.Meta(ge=0)] | None = None
    width: Side | None = None
    height: Side | None = None
def check(path):
    try:
        msgspec.convert(read(path), Spec)
    except msgspec.ValidationError as error:
        return str(error)
""",
    "cattrs": """
from dataclasses import dataclass
import cattrs
@dataclass
class Spec:
    name: str
    templates: list[str]
    baseline: str
    terms: list[str]
    seeds: int | list[int] = 4
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
converter = cattrs.Converter(forbid_extra_keys=True)
# cattrs structures no union of a scalar and a list by itself: a hook says which is meant
converter.register_structure_hook(int | list[int], lambda value, _: converter.structure(
    value, int if isinstance(value, int) else list[int]))
def check(path):
    try:
        converter.structure(read(path), Spec)
    except Exception as error:
        return "; ".join(str(e) for e in cattrs.transform_error(error)) if isinstance(error, cattrs.BaseValidationError) else str(error)
""",
}

FIX_WORDS = ("e.g.", "did you mean", "write ", "remove", "add ", "use ", "quote it", "rename")


def program(body: str) -> str:
    return f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n{COMMON}{textwrap.dedent(body)}"


def cold_start(body: str, good: Path, repeats: int) -> float | None:
    """Median seconds for a fresh interpreter to import, define the shape and check one good spec."""
    timed = ("import time\n_t0 = time.perf_counter()\n" + program(body)
             + f"\nassert check({str(good)!r}) is None, check({str(good)!r})\nprint(time.perf_counter() - _t0)\n")
    times = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True)
        if done.returncode:
            return None
        times.append(float(done.stdout.split()[-1]))
    return statistics.median(times)


def messages(body: str, paths: list[Path]) -> list[str | None]:
    """Each bad spec's message from the checker, in its own interpreter (as a user meets it)."""
    listing = json.dumps([str(p) for p in paths])
    code = program(body) + f"\nimport json\nprint(json.dumps([check(p) for p in json.loads({listing!r})]))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def qualities(message: str | None, path: Path, field: str) -> str:
    if message is None:
        return "not refused"
    low = message.lower()
    marks = {"file": path.name in message, "line": "line " in low, "field": field in message,
             "fix": any(w in low for w in FIX_WORDS)}
    return " ".join(k if ok else "-" * len(k) for k, ok in marks.items())


def available(name: str) -> bool:
    module = name.split()[0]
    return module == "ldmprobe" or subprocess.run([sys.executable, "-c", f"import {module}"],
                                                  capture_output=True).returncode == 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--show", action="store_true", help="print every message in full")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="spec-checks-"))
    good = folder / "good.toml"
    good.write_text(GOOD)
    paths = []
    for i, (_, _, text) in enumerate(BAD):
        paths.append(folder / f"bad{i}.toml")
        paths[-1].write_text(text)
    names = [n for n in CHECKERS if available(n)]
    skipped = [n for n in CHECKERS if n not in names]
    base = cold_start(CHECKERS["ldmprobe (hand-written)"], good, args.repeats)
    print(f"cold start (import, define, check one good spec; median of {args.repeats}):")
    for name in names:
        seconds = base if name.startswith("ldmprobe") else cold_start(CHECKERS[name], good, args.repeats)
        if seconds is None:
            print(f"  {name:<24} failed on the good spec")
            continue
        print(f"  {name:<24} {seconds * 1000:7.0f} ms  ({seconds / base:.2f} x ldmprobe's)")
    if skipped:
        print(f"  not installed: {', '.join(skipped)}")
    print("\nerrors (file / line / field / fix named in the message):")
    found = {name: messages(CHECKERS[name], paths) for name in names}
    for i, (what, field, _) in enumerate(BAD):
        print(f"  {what}")
        for name in names:
            print(f"    {name:<24} {qualities(found[name][i], paths[i], field)}")
            if args.show and found[name][i]:
                print(textwrap.indent(textwrap.fill(found[name][i], 100), " " * 8))
    for name in names:
        scores = [qualities(m, p, f) for m, p, (_, f, _) in zip(found[name], paths, BAD)]
        refused = sum(s != "not refused" for s in scores)
        full = sum(s == "file line field fix" for s in scores)
        print(f"{name}: refused {refused} of {len(BAD)}, {full} with file, line, field and fix")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
