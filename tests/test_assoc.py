"""Tests for ldmprobe.specs.assoc and `ldmprobe assoc`: specs, shipped tests, runs, outputs."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe import resources
from ldmprobe.engine.assoc_images import BadImagesError, embed_prompt_sets
from ldmprobe.results.assoc import schema_path
from ldmprobe.specs.assoc import AssocSpec, assoc_from_dict, load_assoc_spec
from ldmprobe.usecases.assoc import AssocOptions, assoc_from_names, run_assoc
from ldmprobe.errors import BadInputError, ExitCode, SpecError
from tests.support import undeclared_keys

REPO = Path(__file__).resolve().parents[1]
SHIPPED = resources.list_shipped("assoc")

WORDS = """\
name = "small"
description = "a small test"
source = "made up for the tests"

[X]
label = "flowers"
words = ["rose", "tulip", "daisy"]

[Y]
label = "insects"
words = ["ant", "wasp", "moth"]

[A]
label = "pleasant"
words = ["love", "peace"]

[B]
label = "unpleasant"
words = ["war", "filth"]
"""

IMAGES = """\
name = "tiny-images"
source = "made up for the tests"
steps = 2

[X]
label = "cats"
prompts = ["a photo of a cat", "a drawing of a cat"]
seeds = 2

[Y]
label = "dogs"
prompts = ["a photo of a dog", "a drawing of a dog"]
seeds = [0, 1]

[A]
label = "day"
prompts = ["a sunny day", "a bright morning"]
seeds = 2

[B]
label = "night"
prompts = ["a dark night", "a starry night"]
seeds = 2
"""


def write(tmp_path: Path, text: str, name: str = "assoc.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def spec_error(path_or_name) -> str:
    with pytest.raises(SpecError) as info:
        load_assoc_spec(path_or_name)
    message = str(info.value)
    assert "\n" not in message, "errors are one paragraph"
    assert info.value.exit_code == ExitCode.BAD_INPUT
    return message


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def validator(ref: str | None = None):
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    if ref is not None:
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": ref}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


# --------------------------------------------------------------------------------------------
# Loading


def test_words_spec_loads_and_normalises(tmp_path):
    text = edit(WORDS, '["rose", "tulip", "daisy"]', '["rose", "  tulip ", "daisy"]')
    text = edit(text, 'words = ["love", "peace"]',
                'words = ["love", "peace"]\ntemplates = ["a photo of {}.", "a picture of {}."]')
    text += "\n[test]\nddof = 0\npermutations = 500\nseed = 7\n"
    spec = load_assoc_spec(write(tmp_path, text))
    assert spec.name == "small" and spec.source == "made up for the tests"
    assert spec.X.words == ("rose", "tulip", "daisy") and spec.X.kind == "words"
    assert spec.A.templates == ("a photo of {}.", "a picture of {}.")
    assert (spec.ddof, spec.permutations, spec.seed) == (0, 500, 7)
    assert [s.size for s in spec.sets.values()] == [3, 3, 2, 2]
    assert not spec.needs_generator
    # name defaults to the file name; description/source are optional
    bare = "\n".join(l for l in WORDS.splitlines() if not l.startswith(("name", "desc", "source")))
    spec = load_assoc_spec(write(tmp_path, bare, "my-test.toml"))
    assert spec.name == "my-test" and spec.source == "" and spec.description == ""


def test_prompt_spec_loads(tmp_path):
    spec = load_assoc_spec(write(tmp_path, IMAGES))
    assert spec.needs_generator and spec.steps == 2
    assert spec.X.kind == "prompts" and spec.X.seeds == (0, 1) and spec.Y.seeds == (0, 1)
    assert spec.X.size == 4
    assert spec.X.images() == [("a photo of a cat", 0), ("a photo of a cat", 1),
                               ("a drawing of a cat", 0), ("a drawing of a cat", 1)]


def test_assoc_from_dict_validates():
    data = {k: {"label": k.lower(), "words": [f"{k}{i}" for i in range(2)]} for k in "XYAB"}
    spec = assoc_from_dict(data)
    assert isinstance(spec, AssocSpec) and spec.path == "<inline>" and spec.X.words == ("X0", "X1")
    data["A"] = {"label": "a", "words": []}
    with pytest.raises(SpecError, match=r"A\.words: the list is empty; set A needs at least one"):
        assoc_from_dict(data)


# --------------------------------------------------------------------------------------------
# Bad specs: each a SpecError naming the file, the place and the fix


@pytest.mark.parametrize(
    "old, new, expected",
    [
        # unknown keys, with suggestions and line numbers
        ('source = "made up', 'citation = "made up',
         ["unknown key in the spec", "'citation' (line 3)", "did you mean 'source'?"]),
        ('label = "flowers"', 'label = "flowers"\nword = ["x"]',
         ["unknown key in [X]", "'word' (line 7)", "did you mean 'words'?", "label, words"]),
        ("[B]", "[C]", ["unknown key in the spec", "'C' (line 17)"]),
        # sets
        ('label = "flowers"\n', "", ["line 5 (X)", "has no label", 'label = "..."']),
        ('label = "flowers"', 'label = ""', ["line 6 (X.label)", "non-empty string"]),
        ('words = ["rose", "tulip", "daisy"]', 'words = "rose"',
         ["line 7 (X.words)", "not a single string", "words = ['rose']"]),
        ('words = ["rose", "tulip", "daisy"]', "words = []", ["line 7 (X.words)", "list is empty"]),
        ('words = ["rose", "tulip", "daisy"]', 'words = ["rose", 3]',
         ["X.words[1]", "must be a string, not an integer 3"]),
        ('words = ["rose", "tulip", "daisy"]', 'words = ["rose", "tulip", "Rose"]',
         ["line 7 (X.words[2])", "'Rose' is listed twice", "also [0] = 'rose'",
          "ignores case", "remove the duplicate"]),
        ('words = ["rose", "tulip", "daisy"]', 'words = ["rose"]\nprompts = ["a rose"]\nseeds = 1',
         ["has both words and prompts", "Keep one"]),
        ('words = ["rose", "tulip", "daisy"]', "", ["line 5 (X)", "neither words nor prompts"]),
        ('words = ["rose", "tulip", "daisy"]', 'words = ["rose"]\nseeds = 2',
         ["X.seeds", "seeds only apply to prompt sets", "remove seeds"]),
        ('words = ["rose", "tulip", "daisy"]',
         'words = ["rose"]\ntemplates = ["a photo of a rose"]',
         ["X.templates[0]", "exactly one {}"]),
        ('words = ["rose", "tulip", "daisy"]', 'words = ["rose"]\ntemplates = ["{} and {}"]',
         ["X.templates[0]", "exactly one {}"]),
        ('words = ["rose", "tulip", "daisy"]', 'prompts = ["a rose"]',
         ["line 5 (X)", "prompts but no seeds", "seeds = 4"]),
        ('words = ["rose", "tulip", "daisy"]', 'prompts = ["a rose"]\nseeds = [1, 1]',
         ["X.seeds[1]", "seed 1 is listed twice"]),
        ('words = ["rose", "tulip", "daisy"]', 'prompts = ["a rose"]\nseeds = 0',
         ["X.seeds", "from 1 to"]),
        ('words = ["rose", "tulip", "daisy"]', 'prompts = ["a rose"]\nseeds = "4"',
         ["X.seeds", "a count", "not a string"]),
        ('words = ["rose", "tulip", "daisy"]', 'prompts = ["a {} rose"]\nseeds = 2',
         ["X.prompts[0]", "has braces", "not templates"]),
        ('words = ["rose", "tulip", "daisy"]',
         'prompts = ["a rose"]\nseeds = 2\ntemplates = ["a {}"]',
         ["X.templates", "templates only apply to word sets"]),
        # pairs
        ('words = ["rose", "tulip", "daisy"]', 'prompts = ["a rose"]\nseeds = 2',
         ["(Y)", "target sets X and Y must be of one kind", "X is prompts and Y is words",
          "measure that gap", "both words or both prompts"]),
        ('words = ["ant", "wasp", "moth"]', 'words = ["ant", "Tulip", "moth"]',
         ["Y.words[1]", "'Tulip' is in both X (flowers) and Y (insects)", "must not overlap"]),
        ('words = ["war", "filth"]', 'words = ["war", "peace"]',
         ["B.words[1]", "in both A (pleasant) and B (unpleasant)"]),
        ('[B]\nlabel = "unpleasant"\nwords = ["war", "filth"]\n', "",
         ["has no [B] table", "target sets X and Y and attribute sets A and B"]),
        ("[X]\n", 'X = "flowers"\n[X2]\n', ["unknown key in the spec", "'X2'"]),
        # [test] and generation settings
        ("[X]", "[test]\nddof = 2\n\n[X]", ["line 6 (test.ddof)", "ddof must be 0 or 1", "WEFE"]),
        ("[X]", "[test]\npermutations = 0\n\n[X]",
         ["test.permutations", "from 1 to", "permutations = 100000"]),
        ("[X]", "[test]\nseed = -1\n\n[X]", ["test.seed", "from 0 to"]),
        ("[X]", "[test]\nB = 100\n\n[X]",
         ["unknown key in [test]", "'B' (line 6)", "ddof, permutations, seed"]),
        ("[X]", "test = 3\n\n[X]", ["(test)", "test must be a table"]),
        ('source = "made up for the tests"', 'source = "made up"\nsteps = 20',
         ["line 4 (steps)", "only applies to sets made of prompts", "remove steps"]),
        ('name = "small"', "name = 3", ["line 1 (name)", "name must be a non-empty string"]),
        ('description = "a small test"', "description = 3", ["(description)", "must be a string"]),
    ],
)
def test_bad_specs_name_the_place_and_the_fix(tmp_path, old, new, expected):
    path = write(tmp_path, edit(WORDS, old, new))
    message = spec_error(path)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_set_that_is_not_a_table(tmp_path):
    text = WORDS.replace('[X]\nlabel = "flowers"\nwords = ["rose", "tulip", "daisy"]\n', "")
    text = 'X = "flowers"\n' + text
    message = spec_error(write(tmp_path, text))
    assert "line 1 (X)" in message and "X must be a table, not a string" in message
    assert "[X] on its own line" in message


def test_bad_generation_settings(tmp_path):
    message = spec_error(write(tmp_path, edit(IMAGES, "steps = 2", "steps = 0")))
    assert "line 3 (steps)" in message and "steps must be a whole number ≥ 1" in message
    message = spec_error(write(tmp_path, edit(IMAGES, "steps = 2", "guidance = -1")))
    assert "(guidance)" in message and "finite number ≥ 0" in message
    message = spec_error(write(tmp_path, edit(IMAGES, "steps = 2", "negative_prompt = 1")))
    assert "negative_prompt must be a string" in message


def test_toml_syntax_error_says_the_line(tmp_path):
    path = write(tmp_path, edit(WORDS, 'words = ["ant", "wasp", "moth"]',
                                'words = ["ant" "wasp", "moth"]'))
    message = spec_error(path)
    assert f"{path} line 11" in message and "TOML syntax error" in message
    assert "the line reads: 'words = [\"ant\" \"wasp\", \"moth\"]'" in message


def test_missing_spec_lists_shipped_names_and_suggests(tmp_path):
    message = spec_error("weat-flowers-insects")
    assert "shipped association spec named 'weat-flowers-insects'" in message
    assert "Did you mean 'weat1-flowers-insects'?" in message
    for name in SHIPPED:
        assert name in message
    message = spec_error(tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in message
    assert "is a folder" in spec_error(tmp_path)


def test_validation_imports_nothing_heavy(tmp_path):
    path = write(tmp_path, IMAGES)
    code = (
        "import sys; from ldmprobe.specs.assoc import load_assoc_spec; "
        f"load_assoc_spec({str(path)!r}); load_assoc_spec('weat1-flowers-insects'); "
        "print(sorted(m for m in ('torch', 'diffusers', 'open_clip', 'transformers') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# Shipped specs


def test_the_expected_specs_are_shipped():
    assert set(SHIPPED) >= {
        "weat1-flowers-insects", "weat2-instruments-weapons", "weat6-career-family",
        "weat7-math-arts", "weat8-science-arts", "t2iat-gender-science",
    }


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spec_loads_validates_and_cites(name):
    path = resources.find_shipped(name, subdir="assoc")
    spec = load_assoc_spec(name)
    assert Path(spec.path) == path and spec.name == name
    assert load_assoc_spec(path) == spec
    assert spec.source and spec.description
    head = path.read_text(encoding="utf-8").split("\nname =")[0]
    assert all(line.startswith("#") for line in head.strip().splitlines())
    head = " ".join(line.lstrip("#").strip() for line in head.splitlines())  # one paragraph
    assert "Source:" in head
    if name.startswith("weat"):
        assert "Caliskan" in head and "Science 356" in head and "2017" in head
        assert "Semantics derived automatically from language corpora contain human-like" in head
        assert not spec.needs_generator
    if name.startswith("t2iat"):
        assert "T2IAT" in head and "ACL 2023" in head and "Wang" in head
        assert spec.needs_generator


def test_weat1_and_weat2_lists():
    weat1 = load_assoc_spec("weat1-flowers-insects")
    weat2 = load_assoc_spec("weat2-instruments-weapons")
    for spec in (weat1, weat2):
        assert [s.size for s in spec.sets.values()] == [25, 25, 25, 25]
    assert weat1.X.label == "flowers" and weat1.Y.label == "insects"
    assert weat1.A.label == "pleasant" and weat1.B.label == "unpleasant"
    assert weat1.X.words[:5] == ("aster", "clover", "hyacinth", "marigold", "poppy")
    assert weat1.Y.words[-5:] == ("blackfly", "dragonfly", "horsefly", "roach", "weevil")
    assert {"caress", "vacation", "diploma"} <= set(weat1.A.words)
    assert {"abuse", "prison", "pollute"} <= set(weat1.B.words)
    # WEAT 2 uses WEAT 1's attribute lists ("as per previous experiment")
    assert weat2.A.words == weat1.A.words and weat2.B.words == weat1.B.words
    assert {"harpsichord", "bagpipe"} <= set(weat2.X.words)
    assert {"teargas", "slingshot"} <= set(weat2.Y.words)


def test_weat6_7_8_lists():
    w6, w7, w8 = (load_assoc_spec(n) for n in
                  ("weat6-career-family", "weat7-math-arts", "weat8-science-arts"))
    for spec in (w6, w7, w8):
        assert [s.size for s in spec.sets.values()] == [8, 8, 8, 8]
    assert w6.X.words[0] == "John" and w6.Y.words[-1] == "Donna"
    assert w6.A.words[0] == "executive" and w6.B.words[-1] == "relatives"
    assert "sculpture" in w7.Y.words and "Shakespeare" not in w7.Y.words
    assert "Shakespeare" in w8.Y.words and "sculpture" not in w8.Y.words
    assert {"Einstein", "NASA"} <= set(w8.X.words)
    assert w7.A.words[0] == "male" and w8.A.words[0] == "brother"  # different gender lists


def test_t2iat_design():
    spec = load_assoc_spec("t2iat-gender-science")
    assert all(s.kind == "prompts" for s in spec.sets.values())
    assert spec.X.size == spec.Y.size == spec.A.size == spec.B.size
    # targets: a neutral person; attributes: the same subjects with man / woman
    assert all(" person studying " in p for p in spec.X.prompts + spec.Y.prompts)
    subjects = [p.split(" studying ")[1] for p in spec.X.prompts + spec.Y.prompts]
    assert [p.replace(" man ", " person ") for p in spec.A.prompts] == list(
        spec.X.prompts + spec.Y.prompts)
    assert [p.replace(" woman ", " man ") for p in spec.B.prompts] == list(spec.A.prompts)
    assert {"physics", "poetry"} <= set(subjects)
    assert set(spec.A.seeds) <= set(spec.X.seeds)


# --------------------------------------------------------------------------------------------
# Running on text


def test_text_run_equals_weat_on_encode_texts(tiny_measurer):
    from ldmprobe.analysis import association, stats  # noqa: F401
    from ldmprobe.engine.encode import encode_texts

    spec = load_assoc_spec("weat1-flowers-insects")
    result = run_assoc(spec, AssocOptions(permutations=3000, seed=5), measurer=tiny_measurer)
    X, Y, A, B = (encode_texts(tiny_measurer, list(s.words)) for s in spec.sets.values())
    direct = association.weat(X, Y, A, B, ddof=1, permutations=3000, seed=5)
    assert result.effect_size == pytest.approx(direct.effect_size, rel=1e-12)
    assert result.statistic == pytest.approx(direct.statistic, rel=1e-12)
    assert result.p_value == direct.p_value and result.exact is direct.exact is False
    assert (result.n_x, result.n_y, result.n_a, result.n_b) == (25, 25, 25, 25)
    assert math.isfinite(result.effect_size) and 0 < result.p_value <= 1
    assert result.labels == {"X": "flowers", "Y": "insects", "A": "pleasant", "B": "unpleasant"}
    assert result.config["pipeline"] is None and result.images == ()
    assert result.provenance["tiny"] is True and result.tiny


def test_text_run_with_templates_averages_them(tiny_measurer, tmp_path):
    from ldmprobe.analysis import association, stats  # noqa: F401
    from ldmprobe.engine.encode import encode_texts

    templates = ["a photo of {}.", "a drawing of {}."]
    text = edit(WORDS, 'words = ["love", "peace"]',
                f'words = ["love", "peace"]\ntemplates = {json.dumps(templates)}')
    spec = load_assoc_spec(write(tmp_path, text))
    result = run_assoc(spec, measurer=tiny_measurer)
    # independent: every filled template embedded, averaged per word, renormalised
    filled = [t.replace("{}", w) for w in spec.A.words for t in templates]
    rows = encode_texts(tiny_measurer, filled).reshape(2, 2, -1).mean(1)
    A = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    X, Y, B = (encode_texts(tiny_measurer, list(s.words)) for s in (spec.X, spec.Y, spec.B))
    direct = association.weat(X, Y, A, B)
    assert result.effect_size == pytest.approx(direct.effect_size, rel=1e-5)
    assert result.statistic == pytest.approx(direct.statistic, rel=1e-5, abs=1e-7)
    # the templated set differs from the bare one
    bare = run_assoc(load_assoc_spec(write(tmp_path, WORDS, "bare.toml")), measurer=tiny_measurer)
    assert bare.statistic != result.statistic


def test_seed_determinism(tiny_measurer):
    spec = load_assoc_spec("weat1-flowers-insects")
    first = run_assoc(spec, AssocOptions(permutations=2000, seed=11), measurer=tiny_measurer)
    again = run_assoc(spec, AssocOptions(permutations=2000, seed=11), measurer=tiny_measurer)
    assert not first.exact and first.n_resamples == 2000 and first.seed == 11
    assert first.result_dict() == again.result_dict()
    others = {run_assoc(spec, AssocOptions(permutations=2000, seed=s), measurer=tiny_measurer).p_value
              for s in (12, 13, 14)}
    assert others != {first.p_value}, "the seed drives the sampled p-value"
    # an exact test does not depend on the seed
    w6 = load_assoc_spec("weat6-career-family")
    a, b = (run_assoc(w6, AssocOptions(seed=s), measurer=tiny_measurer) for s in (0, 99))
    assert a.exact and a.n_partitions == a.n_resamples == 12870 and a.min_p == 1 / 12870
    assert a.p_value == b.p_value


def test_spec_test_table_and_arguments(tiny_measurer, tmp_path):
    text = WORDS + "\n[test]\nddof = 0\npermutations = 5\nseed = 3\n"
    spec = load_assoc_spec(write(tmp_path, text))
    from_spec = run_assoc(spec, measurer=tiny_measurer)
    assert (from_spec.ddof, from_spec.permutations, from_spec.seed) == (0, 5, 3)
    assert not from_spec.exact  # comb(6, 3) = 20 partitions > 5
    overridden = run_assoc(spec, AssocOptions(ddof=1, permutations=100, seed=4), measurer=tiny_measurer)
    assert (overridden.ddof, overridden.permutations, overridden.seed) == (1, 100, 4)
    assert overridden.exact and overridden.n_resamples == 20
    assert overridden.config["test"] == {"ddof": 1, "permutations": 100, "seed": 4}
    # sd with ddof=0 is sd(ddof=1) * sqrt((n-1)/n): d scales by sqrt(n/(n-1)), n = 6
    ratio = from_spec.effect_size / overridden.effect_size
    assert ratio == pytest.approx(math.sqrt(6 / 5), rel=1e-9)


def test_text_only_never_loads_the_generator(tiny_measurer, monkeypatch):
    from ldmprobe.models import load as model_load
    from ldmprobe.models import sources as models

    def forbidden(*args, **kwargs):
        raise AssertionError("the generator must not be touched for a text-only spec")

    monkeypatch.setattr(models, "resolve_generator", forbidden)
    monkeypatch.setattr(model_load, "load_generator", forbidden)
    monkeypatch.setattr(model_load, "load_measurer", lambda ref, **kw: tiny_measurer)
    result = assoc_from_names("weat7-math-arts", AssocOptions(measurer="tiny", pipeline="tiny", device="cpu"))
    assert result.config["pipeline"] is None and result.n_x == 8


@pytest.mark.slow
def test_cached_image_sets_load_no_pipeline(tiny_measurer, tmp_path, monkeypatch):
    """With every image of the prompt sets cached, a rerun does not load the generator's weights."""
    from ldmprobe.models import load as model_load

    monkeypatch.setenv("LDMPROBE_CACHE", str(tmp_path / "cache"))
    path = write(tmp_path, IMAGES)
    first = assoc_from_names(path, AssocOptions(measurer="tiny", pipeline="tiny", device="cpu", permutations=99))

    def forbidden(*args, **kwargs):
        raise AssertionError("every image is cached: the pipeline must not be loaded")

    monkeypatch.setattr(model_load, "load_generator", forbidden)
    again = assoc_from_names(path, AssocOptions(measurer="tiny", pipeline="tiny", device="cpu", permutations=99))
    assert again.result_dict() == first.result_dict()
    assert again.config["generation"] == first.config["generation"]
    assert again.config["pipeline"] == first.config["pipeline"]


@pytest.mark.slow
def test_text_only_cli_does_not_import_diffusers(tiny_measurer, tmp_path):
    code = textwrap.dedent("""
        import sys
        from ldmprobe.cli.main import main
        from ldmprobe.cli.assoc import assoc
        main.add_command(assoc)
        try:
            main.main(["assoc", "weat6-career-family", "--measurer", "tiny", "--pipeline",
                       "tiny", "--device", "cpu", "--format", "json"], standalone_mode=False)
        finally:
            print("DIFFUSERS-IMPORTED" if "diffusers" in sys.modules else "NO-DIFFUSERS",
                  file=sys.stderr)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "NO-DIFFUSERS" in out.stderr
    assert json.loads(out.stdout)["result"]["n_x"] == 8


# --------------------------------------------------------------------------------------------
# Running on images


@pytest.fixture(scope="module")
def image_result(tiny_measurer, tiny_generator, tmp_path_factory):
    path = write(tmp_path_factory.mktemp("img"), IMAGES)
    return run_assoc(load_assoc_spec(path), AssocOptions(permutations=1000, seed=0), measurer=tiny_measurer,
                     generator=tiny_generator)


def test_image_path_runs_and_gives_finite_numbers(image_result):
    r = image_result
    assert (r.n_x, r.n_y, r.n_a, r.n_b) == (4, 4, 4, 4)
    for value in (r.effect_size, r.statistic, r.p_value, r.min_p):
        assert math.isfinite(value)
    # prompts are re-partitioned as blocks (a prompt's images together): comb(4 prompts, 2) = 6,
    # not comb(8 images, 4) = 70 as when single images were shuffled (anti-conservative)
    assert 0 < r.p_value <= 1 and r.exact and r.n_partitions == 6 and r.min_p == pytest.approx(1 / 6)
    assert r.unit == "prompt" and (r.n_blocks_x, r.n_blocks_y) == (2, 2) and r.n_dropped == 0
    assert r.result_dict()["unit"] == "prompt" and "prompts like these" in r.generalises_to
    assert len(r.images) == 16 and len({im.key for im in r.images}) == 16
    assert [(im.set, im.prompt, im.seed) for im in r.images[:2]] == [
        ("X", "a photo of a cat", 0), ("X", "a photo of a cat", 1)]
    gen = r.config["generation"]
    assert gen["steps"] == 2 and gen["guidance"] == 7.5 and gen["width"] == gen["height"] == 64
    assert gen["call_shape"] == 4  # the device's default (CPU), recorded like the sweep's config.call_shape
    assert r.config["pipeline"]["spec"] == "tiny" and r.tiny


def test_call_shape_is_in_the_image_keys_like_the_sweeps(image_result, tiny_measurer, tiny_generator, tmp_path):
    """--call-shape changes each image's recipe (its float noise), so its keys, as in a sweep; the
    device's default shape keeps the keys the sweep gives the same prompts and seeds."""
    from ldmprobe.engine.workitems import Recipe, item_key

    path = write(tmp_path, IMAGES)
    other = run_assoc(load_assoc_spec(path), AssocOptions(permutations=1000, seed=0, call_shape=2),
                      measurer=tiny_measurer, generator=tiny_generator)
    assert other.config["generation"]["call_shape"] == 2
    assert not {im.key for im in other.images} & {im.key for im in image_result.images}
    gen = image_result.config["generation"]
    recipe = Recipe(pipeline=gen["pipeline"], scheduler=gen["scheduler"], steps=gen["steps"],
                    guidance=gen["guidance"], width=gen["width"], height=gen["height"], dtype=gen["dtype"],
                    negative_prompt=gen["negative_prompt"])
    assert [item_key(recipe, im.prompt, im.seed) for im in image_result.images] == [
        im.key for im in image_result.images]


def test_unit_image_is_an_opt_in_with_a_warning(image_result, tiny_measurer, tiny_generator, tmp_path):
    class Warnings:
        def __init__(self):
            self.seen = []

        def warn(self, message):
            self.seen.append(message)

        def __getattr__(self, name):
            return lambda *a, **k: None

    reporter = Warnings()
    path = write(tmp_path, IMAGES)
    r = run_assoc(load_assoc_spec(path), AssocOptions(permutations=1000, seed=0, unit="image"), measurer=tiny_measurer,
                  generator=tiny_generator, reporter=reporter)
    assert r.unit == "image" and r.n_partitions == 70 and any("--unit image" in m for m in reporter.seen)
    # same sets, same effect size and S; only what is re-partitioned differs
    assert r.statistic == pytest.approx(image_result.statistic) and r.effect_size == pytest.approx(image_result.effect_size)
    assert "independent" in r.generalises_to


@pytest.mark.slow
def test_image_embeddings_do_not_depend_on_the_batch(tiny_measurer, tiny_generator, tmp_path):
    from ldmprobe.engine.workitems import item_key

    spec = load_assoc_spec(write(tmp_path, IMAGES))
    sets = [spec.X, spec.A]
    big, records, recipe = embed_prompt_sets(tiny_generator, tiny_measurer, sets, steps=2,
                                             batch_size=8)
    small, _, _ = embed_prompt_sets(tiny_generator, tiny_measurer, sets, steps=2, batch_size=3)
    for name in ("X", "A"):
        assert big[name].shape == (4, 64)
        np.testing.assert_allclose(big[name], small[name], atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(big[name], axis=1), 1, atol=1e-5)
    assert records[0].key == item_key(recipe, "a photo of a cat", 0)
    # different seeds make different images
    assert not np.allclose(big["X"][0], big["X"][1])


def test_prompt_spec_needs_a_generator(tiny_measurer, tmp_path):
    spec = load_assoc_spec(write(tmp_path, IMAGES))
    with pytest.raises(ValueError, match="pass a loaded generator"):
        run_assoc(spec, measurer=tiny_measurer)


def test_over_long_prompt_is_refused_before_generating(tiny_measurer, tiny_generator, tmp_path):
    long = "a photo of a cat " + "very " * 80
    spec = load_assoc_spec(write(tmp_path, edit(IMAGES, '"a drawing of a cat"', f'"{long}"')))
    with pytest.raises(BadInputError, match="longer than the text encoder's limit of 77"):
        run_assoc(spec, measurer=tiny_measurer, generator=tiny_generator)


def test_nan_images_never_reach_the_statistics(tiny_measurer, tiny_generator, tmp_path, monkeypatch):
    monkeypatch.setenv("LDMPROBE_CACHE", str(tmp_path / "cache"))  # keep failure records private

    def broken_pipe(prompt, **kwargs):
        images = np.full((len(prompt), 8, 8, 3), 0.5, dtype=np.float32)
        images[0] = np.nan
        return types.SimpleNamespace(images=images)

    fake = types.SimpleNamespace(
        pipe=broken_pipe, identity=tiny_generator.identity, folder=tiny_generator.folder,
        dtype="float32", ref=tiny_generator.ref, tokenizer=tiny_generator.tokenizer,
        device="cpu", safety_checker=None,
    )
    spec = load_assoc_spec(write(tmp_path, IMAGES))
    with pytest.raises(BadImagesError, match=r"'a photo of a cat' seed 0 \(nan\)") as info:
        run_assoc(spec, measurer=tiny_measurer, generator=fake)
    assert info.value.exit_code == ExitCode.RUNTIME


# --------------------------------------------------------------------------------------------
# Output


def test_json_documents_validate_against_the_schema(tiny_measurer, image_result):
    text = run_assoc(load_assoc_spec("weat8-science-arts"), measurer=tiny_measurer)
    for result in (text, image_result):
        document = json.loads(json.dumps(result.to_dict()))
        validator().validate(document)
        assert undeclared_keys(document, json.loads(schema_path().read_text(encoding="utf-8"))) == []
        assert document["kind"] == "assoc" and document["schema_version"]
        assert set(document["result"]) == {
            "effect_size", "statistic", "p_value", "exact", "n_partitions", "n_resamples",
            "seed", "ddof", "min_p", "n_x", "n_y", "n_a", "n_b", "labels", "permutations",
            "unit", "generalises_to", "n_blocks_x", "n_blocks_y", "n_dropped"}
        assert document["result"]["unit"] == ("word" if result is text else "prompt")
        validator("#/$defs/record").validate(json.loads(json.dumps(result.record())))
    # the schema is not vacuous
    broken = json.loads(json.dumps(text.to_dict()))
    broken["result"]["p_value"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(broken)
    del broken["result"]
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(broken)


def test_cli_json_stdout_is_only_json(cli, tiny_measurer):
    runner = CliRunner()
    result = runner.invoke(cli, ["assoc", "weat7-math-arts", "--measurer", "tiny", "--device",
                                 "cpu", "--format", "json", "--permutations", "500",
                                 "--seed", "2", "--ddof", "0"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # nothing but the document
    validator().validate(document)
    assert document["result"]["ddof"] == 0 and document["result"]["seed"] == 2
    assert document["config"]["test"] == {"ddof": 0, "permutations": 500, "seed": 2}
    assert document["provenance"]["tiny"] is True
    assert "tiny models have random weights" in result.stderr


def test_cli_jsonl_is_one_record(cli, tiny_measurer):
    result = CliRunner().invoke(cli, ["assoc", "weat6-career-family", "--measurer", "tiny",
                                      "--device", "cpu", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    validator("#/$defs/record").validate(record)
    assert record["name"] == "weat6-career-family" and record["exact"] is True


def test_cli_table(cli, tiny_measurer):
    result = CliRunner().invoke(cli, ["assoc", "weat6-career-family", "--measurer", "tiny",
                                      "--device", "cpu", "--format", "table",
                                      "--pipeline", "tiny"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for fragment in ("effect size d", "p (one-sided)", "exact over all 12,870 partitions",
                     "X 8, Y 8, A 8, B 8", "male names", "career", "these numbers mean nothing"):
        assert fragment in out, fragment
    assert "--pipeline ignored" in result.stderr


def test_cli_bad_spec_exits_2_with_one_paragraph(cli, tmp_path):
    path = write(tmp_path, edit(WORDS, '"moth"', '"moth", "ant"'))
    result = CliRunner().invoke(cli, ["assoc", str(path), "--measurer", "tiny"])
    assert result.exit_code == int(ExitCode.BAD_INPUT)
    assert result.stdout == ""
    assert "'ant' is listed twice" in result.stderr


def test_set_paths_are_told_apart_and_bad_ones_refused(tmp_path):
    from ldmprobe.errors import BadInputError
    from ldmprobe.specs.assoc_sources import kind_of_path

    (tmp_path / "pics").mkdir()
    (tmp_path / "e.npy").write_bytes(b"")
    (tmp_path / "e.txt").write_text("x")
    assert kind_of_path("X", str(tmp_path / "pics")) == ("images", tmp_path / "pics")
    assert kind_of_path("X", str(tmp_path / "e.npy")) == ("embeddings", tmp_path / "e.npy")
    for name, said in (("missing.csv", "missing.csv not found"), ("e.txt", "is neither .csv (iEAT layout) nor .npy")):
        with pytest.raises(BadInputError, match=r"--set X=.*" + re.escape(said)):
            kind_of_path("X", str(tmp_path / name))
