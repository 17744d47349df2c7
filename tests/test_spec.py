"""Tests for ldmprobe.specs.sweep: loading, validation messages, overrides, expand, prompt lengths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ldmprobe import resources
from ldmprobe.errors import BadInputError, ExitCode, SpecError
from ldmprobe.specs.sweep import (
    DEFAULT_SEED_COUNT,
    Spec,
    check_prompt_lengths,
    expand,
    load_spec,
    spec_from_dict,
)

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
name = "houses"
templates = [
    "a photo of a {} house",
    "a photo of the {} family's house",
]
baseline = ""
terms = ["fancy", "poor"]
probes = ["mansion", "hut"]
seeds = 3
negative_prompt = "blurry"
steps = 20
guidance = 7
width = 512
height = 768
"""


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def spec_error(path_or_name, **kwargs) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path_or_name, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "errors are one paragraph"
    assert info.value.exit_code == ExitCode.BAD_INPUT
    return message


# --------------------------------------------------------------------------------------------
# Good specs


def test_toml_spec_loads_and_normalises(tmp_path):
    path = write(tmp_path, GOOD)
    spec = load_spec(path)
    assert spec.name == "houses"
    assert spec.templates == ("a photo of a {} house", "a photo of the {} family's house")
    assert spec.baseline == ""
    assert spec.terms == ("fancy", "poor")
    assert spec.all_terms == ("", "fancy", "poor")
    assert spec.probes == ("mansion", "hut")
    assert spec.seeds == (0, 1, 2)
    assert spec.negative_prompt == "blurry"
    assert spec.steps == 20
    assert spec.guidance == 7.0 and isinstance(spec.guidance, float)
    assert (spec.width, spec.height) == (512, 768)
    assert spec.source == str(path)
    d = spec.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["terms"] == ["fancy", "poor"] and d["seeds"] == [0, 1, 2]
    hash(spec)  # frozen and hashable


def test_optional_fields_default(tmp_path):
    path = write(
        tmp_path,
        """\
        templates = ["a {} house"]
        baseline = ""
        terms = ["fancy"]
        """,
        name="my-houses.toml",
    )
    spec = load_spec(path)
    assert spec.name == "my-houses"
    assert spec.probes == ()
    assert spec.seeds == tuple(range(DEFAULT_SEED_COUNT))
    assert spec.negative_prompt is None
    assert (spec.steps, spec.guidance, spec.width, spec.height) == (None,) * 4


def test_whitespace_in_fields_is_collapsed(tmp_path):
    path = write(
        tmp_path,
        """\
        templates = ["  a  photo of a {}   house "]
        baseline = "  "
        terms = [" middle   eastern "]
        probes = [" old  town "]
        """,
    )
    spec = load_spec(path)
    assert spec.templates == ("a photo of a {} house",)
    assert spec.baseline == ""
    assert spec.terms == ("middle eastern",)
    assert spec.probes == ("old town",)


def test_seeds_count_vs_list(tmp_path):
    base = 'templates = ["a {} house"]\nbaseline = ""\nterms = ["fancy"]\n'
    assert load_spec(write(tmp_path, base + "seeds = 5\n")).seeds == (0, 1, 2, 3, 4)
    assert load_spec(write(tmp_path, base + "seeds = [7, 3, 100]\n")).seeds == (7, 3, 100)
    assert load_spec(write(tmp_path, base + "seeds = [0]\n")).seeds == (0,)


def test_toml_overrides_replace_file_values(tmp_path):
    path = write(tmp_path, GOOD)
    spec = load_spec(path, terms=["rich"], baseline="modern", probes=["villa"], seeds=2)
    assert spec.terms == ("rich",)
    assert spec.baseline == "modern"
    assert spec.probes == ("villa",)
    assert spec.seeds == (0, 1)
    # seeds override as a list, and as command-line strings
    assert load_spec(path, seeds=[4, 9]).seeds == (4, 9)
    assert load_spec(path, seeds="4").seeds == (0, 1, 2, 3)
    assert load_spec(path, seeds="0,3,7").seeds == (0, 3, 7)
    # not given: file values stay
    spec = load_spec(path, terms=(), baseline=None, probes=(), seeds=None)
    assert spec.terms == ("fancy", "poor") and spec.seeds == (0, 1, 2)
    # an empty-string baseline override is an override (not "not given")
    assert load_spec(write(tmp_path, GOOD.replace('baseline = ""', 'baseline = "old"')),
                     baseline="").baseline == ""


def test_plain_text_spec_with_overrides(tmp_path):
    path = write(
        tmp_path,
        """\
        # houses, one template per line

        a photo of a {} house
           a photo of the {} family's house   
        # a commented-out {} template
        a #1 photo of a {} house
        """,
        name="houses.txt",
    )
    spec = load_spec(path, terms=["fancy", "poor"], baseline="", probes=["hut"], seeds=[1, 2])
    assert spec.templates == (
        "a photo of a {} house",
        "a photo of the {} family's house",
        "a #1 photo of a {} house",  # only whole-line comments are comments
    )
    assert spec.name == "houses"
    assert spec.all_terms == ("", "fancy", "poor")
    assert spec.probes == ("hut",)
    assert spec.seeds == (1, 2)
    assert spec.source == str(path)
    # plain text without --seeds gets the default
    assert load_spec(path, terms=["x"], baseline="").seeds == tuple(range(DEFAULT_SEED_COUNT))
    # a single term given as a bare string is one term, not characters
    assert load_spec(path, terms="fancy", baseline="").terms == ("fancy",)


@pytest.mark.parametrize("name", ["fancy-house", "descriptors", "professions"])
def test_shipped_specs_load_by_bare_name_and_validate(name):
    spec = load_spec(name)
    assert Path(spec.source) == resources.find_shipped(name)
    assert spec.name == name
    assert len(spec.templates) >= 8 and len(spec.terms) >= 5 and len(spec.probes) >= 5
    # enough templates for template-level inference, and 19 controls (rank p floor 1/20)
    assert spec.seeds == tuple(range(4)) and len(spec.controls) >= 19
    for template in spec.templates:
        assert template.count("{}") == 1
    prompts = spec.prompts()
    assert len(prompts) == len(spec.templates) * len(spec.all_terms), "prompts are distinct"
    # no article problems such as "a African" / "a attractive"
    for prompt in prompts:
        words = prompt.split()
        for article, word in zip(words, words[1:]):
            if article == "a":
                assert word[0].lower() not in "aeio", prompt
            if article == "an":
                assert word[0].lower() in "aeiou", prompt
    # the same file loads by path, with the same content
    assert load_spec(spec.source) == spec


@pytest.mark.parametrize("name", ["fancy-house", "descriptors", "professions"])
def test_shipped_specs_cite_their_source(name):
    head = resources.find_shipped(name).read_text(encoding="utf-8")[:1500]
    assert "2211.03759" in head
    assert "Bianchi" in head and "FAccT" in head and "2023" in head
    assert "Easily Accessible Text-to-Image Generation Amplifies Demographic Stereotypes" in head


def test_shipped_fancy_house_content():
    spec = load_spec("fancy-house")
    assert spec.baseline == ""
    for term in ("fancy", "African", "American", "poor", "wealthy"):
        assert term in spec.terms
    for probe in ("mansion", "hut", "slum", "luxury", "poverty", "modern", "rural"):
        assert probe in spec.probes
    assert "a photo of houses" in spec.prompts()


def test_shipped_descriptors_content():
    spec = load_spec("descriptors")
    assert "a photo of the face of {}" in spec.templates
    assert "a photo of the face of an attractive person" in spec.prompts()
    for word in ("poor", "rich", "terrorist", "thug", "exotic"):
        assert any(word in term for term in spec.terms), word
    for probe in ("man", "woman", "white", "black", "asian", "middle eastern", "young", "old"):
        assert probe in spec.probes


def test_spec_from_dict_and_direct_construction_validate():
    spec = spec_from_dict(
        {"templates": ["a {} house"], "baseline": "", "terms": ["fancy"], "seeds": 2}
    )
    assert spec.source == "<inline>" and spec.seeds == (0, 1)
    direct = Spec(name="x", templates=["a {} house"], baseline="", terms=["fancy"], seeds=3)
    assert direct.templates == ("a {} house",) and direct.seeds == (0, 1, 2)
    with pytest.raises(SpecError, match="no {} placeholder"):
        Spec(name="x", templates=("a house",), baseline="", terms=("fancy",))
    with pytest.raises(SpecError, match="unknown spec key 'seed'.*'seeds'"):
        spec_from_dict({"templates": ["a {} house"], "baseline": "", "terms": ["x"], "seed": 1})


# --------------------------------------------------------------------------------------------
# Bad input: each a SpecError whose text names the file, the place and the fix


def test_missing_file_names_what_was_looked_for(tmp_path):
    missing = tmp_path / "nope.toml"
    message = spec_error(missing)
    assert str(missing) in message
    assert "fancy-house" in message and "descriptors" in message  # the shipped names
    message = spec_error("fancy-hous")
    assert "shipped spec named 'fancy-hous'" in message
    assert "Did you mean 'fancy-house'?" in message


def test_folder_is_not_a_spec(tmp_path):
    assert "is a folder" in spec_error(tmp_path)


def test_toml_syntax_error_says_the_line(tmp_path):
    path = write(
        tmp_path,
        """\
        name = "x"
        templates = ["a {} house"]
        baseline = ""
        terms = ["fancy" "poor"]
        seeds = 2
        """,
    )
    message = spec_error(path)
    assert str(path) in message
    assert "TOML syntax error" in message
    assert "line 4" in message
    assert 'terms = ["fancy" "poor"]' in message  # quotes the offending line


def test_unknown_keys_are_named_with_suggestions(tmp_path):
    path = write(
        tmp_path,
        """\
        templates = ["a {} house"]
        baseline = ""
        terms = ["fancy"]
        seed = 4
        num_inference_steps = 20
        colour = "red"
        """,
    )
    message = spec_error(path)
    assert str(path) in message
    assert "'seed' (line 4) — did you mean 'seeds'?" in message
    assert "'num_inference_steps' (line 5) — did you mean 'steps'?" in message
    assert "'colour' (line 6)" in message
    assert "'colour' (line 6) — did you mean" not in message


TEMPLATE_HEAD = 'baseline = ""\nterms = ["fancy"]\n'


@pytest.mark.parametrize(
    "templates, expected",
    [
        ('["a {} house", "a house"]', ["templates[1]", "'a house' has no {} placeholder",
                                       "Put {} where the term goes"]),
        ('["a {} {} house"]', ["templates[0]", "has 2 {} placeholders", "exactly one"]),
        ('["a {term} house"]', ["no {} placeholder", "{term} or {0} are not supported"]),
        ('["a {} house {0}"]', ["braces besides its one {} placeholder"]),
        ('["a {} house {with braces}"]', ["literal braces are not allowed"]),
        ('["a {} house }"]', ["braces besides"]),
        ('[]', ["there are no templates"]),
        ('["   "]', ["the template is empty"]),
        ('"a {} house"', ["must be a list of strings, not a single string",
                          "templates = ['a {} house']"]),
        ('["a {} house", 3]', ["templates[1]", "must be a string, not an integer"]),
        ('["a {} house", "a  {} HOUSE"]', ["repeats template 1", "differ only in case"]),
    ],
)
def test_bad_templates(tmp_path, templates, expected):
    path = write(tmp_path, TEMPLATE_HEAD + f"templates = {templates}\n")
    message = spec_error(path)
    assert str(path) in message
    for text in expected:
        assert text in message


def test_template_error_names_the_toml_line(tmp_path):
    path = write(
        tmp_path,
        """\
        baseline = ""
        terms = ["fancy"]
        templates = [
            "a photo of a {} house",
            "a photo of a house",
        ]
        """,
    )
    assert f"{path} line 5 (templates[1])" in spec_error(path)


def test_missing_templates_key(tmp_path):
    path = write(tmp_path, TEMPLATE_HEAD)
    assert "no 'templates' key" in spec_error(path)


def test_plain_text_template_error_names_the_line(tmp_path):
    path = write(tmp_path, "# comment\n\na {} house\na {} {} car\n", name="t.txt")
    message = spec_error(path, baseline="", terms=["x"])
    assert f"{path} line 4" in message and "has 2 {} placeholders" in message


def test_plain_text_toml_by_mistake_gets_a_hint(tmp_path):
    path = write(tmp_path, 'templates = ["a {} house"]\n', name="spec.cfg")
    message = spec_error(path, baseline="", terms=["x"])
    assert f"{path} line 1" in message and "looks like TOML" in message
    assert "Rename it to spec.toml" in message


def test_plain_text_without_templates(tmp_path):
    path = write(tmp_path, "# only a comment\n\n", name="t.txt")
    assert "has no templates" in spec_error(path, baseline="", terms=["x"])


def test_baseline_missing(tmp_path):
    path = write(tmp_path, 'templates = ["a {} house"]\nterms = ["fancy"]\n')
    message = spec_error(path)
    assert str(path) in message and "no 'baseline' key" in message
    assert 'baseline = ""' in message  # says how to write "no modifier"
    txt = write(tmp_path, "a {} house\n", name="t.txt")
    message = spec_error(txt, terms=["fancy"])
    assert "--baseline" in message and str(txt) in message


def test_terms_missing_or_empty(tmp_path):
    path = write(tmp_path, 'templates = ["a {} house"]\nbaseline = ""\n')
    assert "no 'terms' key" in spec_error(path)
    path = write(tmp_path, 'templates = ["a {} house"]\nbaseline = ""\nterms = []\n')
    message = spec_error(path)
    assert "line 3 (terms)" in message and "no terms" in message
    txt = write(tmp_path, "a {} house\n", name="t.txt")
    assert "--term" in spec_error(txt, baseline="")


@pytest.mark.parametrize(
    "terms, baseline, expected",
    [
        ('["fancy", "poor", "fancy"]', '""', ["line 2 (terms[2])", "'fancy' is listed twice",
                                              "terms[0]", "Remove the duplicate"]),
        ('["African", "african"]', '""', ["listed twice", "ignores case"]),
        ('["fancy", "plain"]', '"plain"', ["terms[1]", "same as the baseline 'plain'",
                                           "remove it from the terms"]),
        ('["fancy", ""]', '""', ["the term is empty", "Only the baseline may be empty"]),
        ('"fancy"', '""', ["not a single string", "terms = ['fancy']"]),
        ('["fancy", 1]', '""', ["terms[1]", "must be a string, not an integer"]),
        ('["fancy"]', "0", ["baseline must be a string, not an integer"]),
    ],
)
def test_bad_terms(tmp_path, terms, baseline, expected):
    path = write(tmp_path, f'templates = ["a {{}} house"]\nterms = {terms}\nbaseline = {baseline}\n')
    message = spec_error(path)
    assert str(path) in message
    for text in expected:
        assert text in message


def test_duplicate_terms_from_the_command_line(tmp_path):
    path = write(tmp_path, "a {} house\n", name="t.txt")
    message = spec_error(path, baseline="", terms=["fancy", "fancy"])
    assert "(from the command line)" in message and "listed twice" in message
    assert "same as the baseline" in spec_error(path, baseline="fancy", terms=["fancy"])


HEAD = 'templates = ["a {} house"]\nbaseline = ""\nterms = ["fancy"]\n'


@pytest.mark.parametrize(
    "line, expected",
    [
        ("seeds = 0", ["line 4 (seeds)", "at least 1, not 0", "seeds = 8"]),
        ("seeds = -3", ["at least 1, not -3"]),
        ("seeds = []", ["seed list is empty"]),
        ("seeds = [1, 2, 1]", ["line 4 (seeds[2])", "seed 1 is listed twice", "distinct"]),
        ("seeds = [0, -1]", ["seed -1 is out of range"]),
        ('seeds = [0, "a"]', ["'a' is not a whole number"]),
        ("seeds = 2.5", ["seeds must be a count", "not a number 2.5"]),
        ("seeds = true", ["seeds must be a count", "boolean"]),
        ("steps = 0", ["line 4 (steps)", "at least 1, not 0"]),
        ('steps = "50"', ["steps must be a whole number, not a string"]),
        ("steps = 20.0", ["steps must be a whole number"]),
        ("width = 500", ["line 4 (width)", "positive multiple of 8", "width = 496 or 504"]),
        ("height = 0", ["height must be a positive multiple of 8"]),
        ("height = 512.0", ["height must be a whole number of pixels"]),
        ("guidance = -1.0", ["line 4 (guidance)", "finite number ≥ 0"]),
        ("guidance = nan", ["finite number ≥ 0"]),
        ('guidance = "high"', ["guidance must be a number, not a string"]),
        ("negative_prompt = 3", ["negative_prompt must be a string"]),
        ('probes = ["hut", ""]', ["line 4 (probes[1])", "empty string"]),
        ('probes = ["hut", "slum", "hut"]', ["probes[2]", "'hut' is listed twice"]),
        ('probes = "hut"', ["probes must be a list of strings, not a single string"]),
        ('name = ""', ["name must be a non-empty string"]),
    ],
)
def test_bad_fields(tmp_path, line, expected):
    path = write(tmp_path, HEAD + line + "\n")
    message = spec_error(path)
    assert str(path) in message
    for text in expected:
        assert text in message, message


@pytest.mark.parametrize(
    "seeds, expected",
    [
        (0, ["(from the command line)", "at least 1", "--seeds 8"]),
        ([3, 3], ["listed twice"]),
        ([-2], ["out of range"]),
        ("two", ["--seeds 'two'", "comma-separated"]),
    ],
)
def test_bad_seed_overrides(tmp_path, seeds, expected):
    message = spec_error(write(tmp_path, GOOD), seeds=seeds)
    for text in expected:
        assert text in message


def test_bad_probe_override(tmp_path):
    message = spec_error(write(tmp_path, GOOD), probes=["hut", "hut"])
    assert "(from the command line)" in message and "listed twice" in message


# --------------------------------------------------------------------------------------------
# expand


@pytest.mark.parametrize(
    "template, term, expected",
    [
        ("a photo of a {} house", "", "a photo of a house"),
        ("a photo of a {} house", "fancy", "a photo of a fancy house"),
        ("{} house", "", "house"),
        ("a house {}", "", "a house"),
        ("a photo of a {} house", "  very   fancy ", "a photo of a very fancy house"),
        ("a  photo\tof a\n{} house ", "old", "a photo of a old house"),
        # the user's text is kept: no article fixing, no case change
        ("a photo of a {} house", "African", "a photo of a African house"),
        ("a photo of the {}-style house", "Tudor", "a photo of the Tudor-style house"),
        ("a photo of a {} house", "{}", "a photo of a {} house"),  # term text is literal
    ],
)
def test_expand(template, term, expected):
    assert expand(template, term) == expected


def test_expand_rejects_bad_templates():
    with pytest.raises(SpecError):
        expand("a house", "fancy")
    with pytest.raises(SpecError):
        expand("a {} {} house", "fancy")


# --------------------------------------------------------------------------------------------
# check_prompt_lengths


def fake_count(prompt: str) -> int:
    return len(prompt.split()) + 2  # words + start/end tokens


def test_prompt_lengths_ok():
    assert check_prompt_lengths(["a photo of a house"] * 3, fake_count) == []


def test_prompt_lengths_over_limit_is_an_error_listing_every_prompt():
    long1 = " ".join(["word"] * 80)
    long2 = " ".join(["house"] * 76)  # 78 with start/end
    ok = " ".join(["x"] * 75)  # exactly 77
    with pytest.raises(BadInputError) as info:
        check_prompt_lengths([ok, long1, long2, long1], fake_count)
    message = str(info.value)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert "2 prompts are longer" in message
    assert f"{long1!r} (82 tokens)" in message
    assert f"{long2!r} (78 tokens)" in message
    assert repr(ok) not in message
    assert "--allow-truncation" in message
    assert "77 tokens" in message


def test_prompt_lengths_allowed_returns_the_overlong_prompts():
    long1 = " ".join(["word"] * 80)
    calls = []

    def counting(prompt):
        calls.append(prompt)
        return fake_count(prompt)

    over = check_prompt_lengths(["short", long1, long1], counting, allow_truncation=True)
    assert over == [long1]
    assert calls == ["short", long1], "each distinct prompt counted once"


def test_prompt_lengths_custom_limit():
    with pytest.raises(BadInputError, match="limit of 5 tokens"):
        check_prompt_lengths(["one two three four"], fake_count, max_tokens=5)
    assert check_prompt_lengths(["one two three"], fake_count, max_tokens=5) == []


# --------------------------------------------------------------------------------------------
# Imports stay light


def test_spec_and_plan_do_not_import_heavy_libraries():
    code = (
        "import sys, ldmprobe.specs.sweep, ldmprobe.engine.workitems\n"
        "heavy = [m for m in ('torch', 'diffusers', 'open_clip', 'transformers') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------------
# controls, pipeline and measurer (issue 11)


def test_controls_pipeline_and_measurer_are_read_and_validated():
    from ldmprobe.specs.sweep import spec_from_dict

    base = {"templates": ["a {} house"], "baseline": "", "terms": ["fancy"]}
    spec = spec_from_dict({**base, "controls": [" quiet ", "red"], "pipeline": "tiny", "measurer": "tiny"})
    assert spec.controls == ("quiet", "red") and spec.all_terms == ("", "fancy", "quiet", "red")
    assert (spec.pipeline, spec.measurer) == ("tiny", "tiny")
    assert spec.to_dict()["controls"] == ["quiet", "red"] and spec.to_dict()["pipeline"] == "tiny"
    assert spec_from_dict(base).controls == () and spec_from_dict(base).pipeline is None
    for bad, match in (("quiet", "not a single string"), ([3], "must be a string"), ([""], "empty"),
                       (["Fancy"], "also term 'fancy'"), (["red", "RED"], "also controls"),
                       ({"a": 1}, "list of strings")):
        with pytest.raises(SpecError, match=match):
            spec_from_dict({**base, "controls": bad})
    for key in ("pipeline", "measurer"):
        with pytest.raises(SpecError, match=f"{key} must be a non-empty string"):
            spec_from_dict({**base, key: 5})
