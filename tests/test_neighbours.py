"""Tests of ldmprobe.specs.vocab, ldmprobe.analysis.neighbours and the `neighbours` command (tiny measurer)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.engine import encode as embed
from ldmprobe import resources
from ldmprobe.specs import vocab
from ldmprobe.analysis import neighbours as nb
from ldmprobe.engine.vocab_store import text_cache_key
from ldmprobe.usecases.neighbours import find_neighbours
from ldmprobe.errors import BadInputError, ExitCode
from ldmprobe.specs.vocab import Vocabulary
from ldmprobe.store.word_lists import read_word_list
from tests.support import undeclared_keys

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "ldmprobe" / "schemas" / "neighbours.schema.json"

WORDS = (
    "house", "mansion", "hut", "cottage", "villa", "shack", "palace", "apartment", "castle", "cabin",
    "fancy", "fancies", "posh", "elegant", "luxurious", "cheap", "poor", "rich", "wealthy", "modern",
    "rural", "urban", "tropical", "doctor", "nurse", "car", "tree", "river", "dog", "bread",
    "police officer", "red", "blue", "old", "new", "small", "big", "city", "village", "garden",
)
CONTEXTS = ("a photo of a {} house", "the {} family in front of their home")


@pytest.fixture
def words() -> Vocabulary:
    return Vocabulary(words=WORDS, sources=("test",))


@pytest.fixture
def private_cache(monkeypatch, tmp_path, tiny_measurer):
    """A cache folder of this test's own (the tiny model is already loaded)."""
    monkeypatch.setenv("LDMPROBE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def encode_log(monkeypatch):
    """Every text given to embed.encode_texts, in call order."""
    log: list[list[str]] = []
    real = embed.encode_texts

    def counting(measurer, texts, **kwargs):
        log.append(list(texts))
        return real(measurer, texts, **kwargs)

    monkeypatch.setattr(embed, "encode_texts", counting)
    return log


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x)


def one_by_one(measurer, text: str) -> np.ndarray:
    """The unit text embedding of one text, straight from the model (no batching helpers)."""
    import torch

    with torch.inference_mode():
        row = measurer.model.encode_text(measurer.tokenizer([text]))[0].double().numpy()
    return unit(row)


def by_hand(query: np.ndarray, rows: dict[str, np.ndarray], k: int, leave_out=()):
    scored = [(float(np.dot(query, v)), w) for w, v in rows.items() if w not in leave_out]
    scored.sort(key=lambda pair: -pair[0])
    return scored[:k]


def validator(ref: str = ""):
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    if ref:
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": ref}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture
def vocab_file(tmp_path) -> Path:
    path = tmp_path / "words.txt"
    path.write_text("# a small list\n" + "\n".join(WORDS) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- ranking


def test_ranking_equals_brute_force(tiny_measurer, private_cache, words):
    result = find_neighbours(tiny_measurer, "fancy", words, k=12)
    rows = {w: one_by_one(tiny_measurer, w) for w in WORDS}
    expected = by_hand(one_by_one(tiny_measurer, "fancy"), rows, 12, leave_out={"fancy", "fancies"})
    assert [n.word for n in result.neighbours] == [w for _, w in expected]
    np.testing.assert_allclose([n.score for n in result.neighbours], [s for s, _ in expected], atol=1e-5)
    assert [n.rank for n in result.neighbours] == list(range(1, 13))
    scores = [n.score for n in result.neighbours]
    assert scores == sorted(scores, reverse=True)


def test_context_mode_equals_hand_averaged_templates(tiny_measurer, private_cache, words):
    result = find_neighbours(tiny_measurer, "African", words, contexts=CONTEXTS, k=len(WORDS))

    def in_contexts(word):
        return unit(np.mean([one_by_one(tiny_measurer, c.replace("{}", word)) for c in CONTEXTS], axis=0))

    rows = {w: in_contexts(w) for w in WORDS}
    expected = by_hand(in_contexts("African"), rows, len(WORDS))
    assert [n.word for n in result.neighbours] == [w for _, w in expected]
    np.testing.assert_allclose([n.score for n in result.neighbours], [s for s, _ in expected], atol=1e-5)
    # and it is not the bare-word ranking under another name
    bare = find_neighbours(tiny_measurer, "African", words, k=len(WORDS))
    assert [n.score for n in bare.neighbours] != pytest.approx([n.score for n in result.neighbours], abs=1e-3)
    assert result.config["contexts"] == list(CONTEXTS)


def test_ties_keep_vocabulary_order():
    vectors = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    ranked, _ = nb.rank_words(np.array([1.0, 0.0]), vectors, ["b", "x", "a", "c"], k=3)
    assert [n.word for n in ranked] == ["b", "a", "c"]


# ----------------------------------------------------------------------------- cache


def test_second_query_encodes_no_vocabulary(tiny_measurer, private_cache, words, encode_log):
    first = find_neighbours(tiny_measurer, "fancy", words, contexts=CONTEXTS[:1])
    assert first.cache["status"] == "built"
    encoded = {t for call in encode_log for t in call}
    assert "a photo of a mansion house" in encoded
    encode_log.clear()
    second = find_neighbours(tiny_measurer, "poor", words, contexts=CONTEXTS[:1])
    assert second.cache["status"] == "hit" and second.cache["path"] == first.cache["path"]
    encoded = [t for call in encode_log for t in call]
    assert encoded == ["a photo of a poor house"]  # the term only: 0 vocabulary encodes
    assert not list(Path(first.cache["path"]).parent.glob(".*.tmp"))  # no temp files left


def test_cache_key_covers_measurer_vocabulary_and_contexts(words):
    identity = {"source": "tiny", "fingerprint": "a"}
    key = text_cache_key(identity, words, ())
    assert key == text_cache_key(dict(identity), Vocabulary(WORDS, ("elsewhere",)), ())
    others = {
        text_cache_key({"source": "tiny", "fingerprint": "b"}, words, ()),
        text_cache_key(identity, Vocabulary(WORDS[:-1], ("test",)), ()),
        text_cache_key(identity, Vocabulary(WORDS[::-1], ("test",)), ()),
        text_cache_key(identity, words, CONTEXTS[:1]),
        text_cache_key(identity, words, CONTEXTS),
    }
    assert key not in others and len(others) == 5


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path):
    path.write_bytes(b"not an npy file at all")


def _wrong_shape(path: Path):
    np.save(path, np.ones((3, 64), dtype=np.float32) / 8.0)


def _nan_row(path: Path):
    array = np.load(path)
    array[5] = np.nan
    np.save(path, array)


def _scaled(path: Path):
    np.save(path, np.load(path) * 3.0)


@pytest.mark.parametrize("corrupt", [_truncate, _garbage, _wrong_shape, _nan_row, _scaled])
def test_corrupt_cache_is_detected_and_rebuilt(tiny_measurer, private_cache, words, corrupt):
    first = find_neighbours(tiny_measurer, "villa", words, k=10)
    path = Path(first.cache["path"])
    assert path.is_file() and path.is_relative_to(private_cache / "text")
    corrupt(path)
    again = find_neighbours(tiny_measurer, "villa", words, k=10)
    assert again.cache["status"] == "rebuilt" and again.cache["problem"]
    assert [n.word for n in again.neighbours] == [n.word for n in first.neighbours]
    np.testing.assert_allclose([n.score for n in again.neighbours], [n.score for n in first.neighbours], atol=1e-6)
    assert find_neighbours(tiny_measurer, "villa", words, k=10).cache["status"] == "hit"


# ----------------------------------------------------------------------------- vocabularies


def test_parse_vocab_text():
    text = "# header\n\n  fancy \nFancy\nposh   # inline comment\n# another\npolice    officer\n\t\nposh\nmid#word\n"
    assert vocab.parse_vocab_text(text) == ["fancy", "posh", "police officer", "mid#word"]


def test_read_vocab_file_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# only comments\n\n   \n")
    with pytest.raises(BadInputError, match="empty.txt"):
        vocab.read_vocab_file(empty)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(BadInputError, match="latin1.txt.*UTF-8"):
        vocab.read_vocab_file(latin1)
    with pytest.raises(BadInputError, match="nope.txt"):
        vocab.load_vocabulary([str(tmp_path / "nope.txt")])
    with pytest.raises(BadInputError, match="folder"):
        vocab.load_vocabulary([str(tmp_path)])
    with pytest.raises(BadInputError, match="Did you mean 'adjectives'"):
        vocab.load_vocabulary(["adjectivs"])


def test_load_vocabulary_combines_names_and_files(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("Nurse\nzeppelin\n")
    combined = vocab.load_vocabulary(["professions", str(mine)])
    professions = vocab.read_vocab_file(resources.find_shipped("professions", "vocab", (".txt",)))
    assert combined.words[: len(professions)] == tuple(professions)
    assert combined.words[len(professions):] == ("zeppelin",)  # "Nurse" is already there as "nurse"
    assert combined.sources == ("professions", str(mine))
    assert combined.content_hash != vocab.load_vocabulary(["professions"]).content_hash


@pytest.mark.parametrize("name", ["adjectives", "nationalities", "professions", "objects"])
def test_shipped_lists(name):
    path = resources.find_shipped(name, "vocab", (".txt",))
    assert path is not None
    text = path.read_text(encoding="utf-8")
    header = text.split("\n\n")[0]
    assert header.startswith("#") and "Source" in header
    entries = vocab.parse_vocab_text(text)
    raw = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(entries) == len(raw), "no duplicates in a shipped list"
    assert 100 <= len(entries) <= 400
    assert name in vocab.available_vocabularies()


def test_default_vocabulary_is_clip_whole_words(tiny_measurer):
    words = vocab.load_vocabulary()
    assert words.sources == ("clip-bpe",)
    assert 30_000 <= len(words) <= 40_000
    assert len(set(words.words)) == len(words)
    assert all(w.isalpha() and w == w.lower() for w in words.words)
    assert {"house", "fancy", "african", "doctor", "mansion", "café"} <= set(words.words)
    assert not {"houses</w>", "2019", "<|endoftext|>", "rock&roll"} & set(words.words)
    # each entry is one whole-word token of CLIP's tokenizer
    sample = random.Random(0).sample([w for w in words.words if w.isascii()], 500)
    assert all(len(tiny_measurer.tokenizer.encode(w)) == 1 for w in sample)


@pytest.mark.slow
def test_clip_word_list_is_cached_and_checksummed(private_cache):
    vocab.clip_bpe_words.cache_clear()
    words = vocab.clip_bpe_words()
    [path] = (private_cache / "vocab").glob("clip-bpe-*.txt")
    assert read_word_list(path) == words
    path.write_text(path.read_text(encoding="utf-8").replace("\nhouse\n", "\nhorse\n"), encoding="utf-8")
    assert read_word_list(path) is None  # the checksum catches the edit
    vocab.clip_bpe_words.cache_clear()
    assert vocab.clip_bpe_words() == words and read_word_list(path) == words  # rebuilt


# ----------------------------------------------------------------------------- exclusion


@pytest.mark.parametrize("word, term, expected", [
    ("fancy", "fancy", True), ("Fancy", "fancy", True), ("FANCY", "fancy", True),
    ("fancies", "fancy", True), ("fancy", "fancies", True), ("houses", "house", True),
    ("house", "Houses", True), ("boxes", "box", True), ("churches", "church", True),
    ("police officers", "Police  Officer", True), ("photos", "photo", True),
    ("fancier", "fancy", False), ("housing", "house", False), ("bus", "bu", True),
    ("yes", "y", False), ("housees", "house", False), ("glass", "glas", False),
])
def test_trivial_variants(word, term, expected):
    assert nb.is_trivial_variant(word, term) is expected


def test_self_and_variants_are_left_out_unless_keep_self(tiny_measurer, private_cache):
    words = Vocabulary(("Houses", "house", "mansion", "hut", "housing", "villa"), ("test",))
    result = find_neighbours(tiny_measurer, "House", words, k=10)
    assert sorted(result.excluded) == ["Houses", "house"] and result.excluded[0] == "house"  # by score
    assert {n.word for n in result.neighbours} == {"mansion", "hut", "housing", "villa"}
    kept = find_neighbours(tiny_measurer, "House", words, k=10, keep_self=True)
    assert kept.excluded == () and len(kept.neighbours) == 6
    assert kept.neighbours[0].word == "house" and kept.neighbours[0].score == pytest.approx(1.0, abs=1e-5)


def test_only_variants_that_would_be_listed_are_reported():
    vectors = np.array([[0.9, np.sqrt(0.19)], [1, 0], [0.5, np.sqrt(0.75)], [0.1, np.sqrt(0.99)]],
                       dtype=np.float32)  # cosines to (1, 0): cat .9, house 1, dog .5, houses .1
    names = ["cat", "house", "dog", "houses"]
    ranked, excluded = nb.rank_words(np.array([1.0, 0.0]), vectors, names, k=1, term="House")
    assert [n.word for n in ranked] == ["cat"] and excluded == ("house",)
    ranked, excluded = nb.rank_words(np.array([1.0, 0.0]), vectors, names, k=3, term="House")
    assert [n.word for n in ranked] == ["cat", "dog"] and excluded == ("house", "houses")
    ranked, excluded = nb.rank_words(np.array([1.0, 0.0]), vectors, names, k=3, term="House", keep_self=True)
    assert [n.word for n in ranked] == ["house", "cat", "dog"] and excluded == ()


# ----------------------------------------------------------------------------- images


def test_rank_by_image_uses_the_centroid_of_unit_rows():
    rng = np.random.default_rng(0)
    vectors = np.array([unit(v) for v in rng.normal(size=(50, 8))], dtype=np.float32)
    names = [f"w{i}" for i in range(50)]
    images = rng.normal(size=(6, 8)) * rng.uniform(0.5, 5, size=(6, 1))  # rows of any length
    ranked, _ = nb.rank_by_image(images, vectors, names, k=7)
    centroid = unit(np.mean([unit(r) for r in images], axis=0))
    expected = by_hand(centroid, dict(zip(names, vectors.astype(np.float64))), 7)
    assert [n.word for n in ranked] == [w for _, w in expected]
    np.testing.assert_allclose([n.score for n in ranked], [s for s, _ in expected], atol=1e-5)
    with pytest.raises(ValueError):
        nb.rank_by_image(np.zeros((0, 8)), vectors, names)


def test_overlap_counts_shared_words_and_jaccard():
    def ranked(*words):
        return tuple(nb.Neighbour(i + 1, w, 0.5) for i, w in enumerate(words))

    result = nb.overlap(ranked("a", "b", "c", "d"), ranked("d", "x", "b", "y"))
    assert result.count == 2 and result.shared == ("b", "d")
    assert result.jaccard == pytest.approx(2 / 6)
    assert nb.overlap(ranked("a"), ranked("a")).jaccard == 1.0
    assert nb.overlap((), ()).to_dict() == {"count": 0, "jaccard": 0.0, "shared": []}


@pytest.mark.slow
def test_cli_images_with_tiny_pipeline(cli, tiny_generator, tiny_measurer, private_cache, vocab_file):
    args = ["neighbours", "fancy", "--measurer", "tiny", "--pipeline", "tiny", "--device", "cpu",
            "--vocab", str(vocab_file), "-k", "5", "--images", "2", "--context", CONTEXTS[0],
            "--format", "json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    validator().validate(document)
    images = document["config"]["images"]
    assert images["count"] == 2 and images["used"] == 2 and images["made"] == 2
    assert images["prompts"] == ["a photo of a fancy house"] and images["seeds"] == [0, 1]
    assert len(document["image_neighbours"]) == 5
    text_words = {n["word"] for n in document["neighbours"]}
    image_words = {n["word"] for n in document["image_neighbours"]}
    assert document["overlap"]["count"] == len(text_words & image_words)
    again = CliRunner().invoke(cli, args)  # the images come from the cache the second time
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert second["config"]["images"]["made"] == 0 and second["config"]["images"]["cached"] == 2
    assert second["image_neighbours"] == document["image_neighbours"]


# ----------------------------------------------------------------------------- CLI


def test_cli_json_validates_and_warns_tiny(cli, tiny_measurer, private_cache, vocab_file):
    result = CliRunner().invoke(cli, ["neighbours", "fancy", "--measurer", "tiny", "--device", "cpu",
                                      "--vocab", str(vocab_file), "-k", "7", "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # stdout is the document and nothing else
    validator().validate(document)
    assert undeclared_keys(document, json.loads(SCHEMA.read_text())) == []  # the published schema names every key
    assert document["kind"] == "neighbours" and document["term"] == "fancy"
    assert document["provenance"]["tiny"] is True
    assert "tiny models have random weights" in result.stderr
    assert [n["rank"] for n in document["neighbours"]] == list(range(1, 8))
    scores = [n["score"] for n in document["neighbours"]]
    assert scores == sorted(scores, reverse=True)
    assert document["excluded"][0] == "fancy" and set(document["excluded"]) <= {"fancy", "fancies"}
    assert document["config"]["vocabulary"]["sources"] == [str(vocab_file)]
    assert document["config"]["images"] is None
    # the schema is not vacuous
    broken = json.loads(result.stdout)
    broken["neighbours"][0]["score"] = "high"
    with pytest.raises(Exception):
        validator().validate(broken)
    del broken["neighbours"]
    with pytest.raises(Exception):
        validator().validate(broken)


def test_the_library_call_gives_the_commands_ranking(cli, tiny_measurer, private_cache, vocab_file):
    """ldmprobe.query_neighbours(term, NeighboursOptions) is what the command runs: same words, same scores."""
    import ldmprobe

    result = CliRunner().invoke(cli, ["neighbours", "poor", "--measurer", "tiny", "--device", "cpu", "--vocab",
                                      str(vocab_file), "-k", "5", "--context", CONTEXTS[0], "--format", "json"])
    assert result.exit_code == 0, result.output
    options = ldmprobe.NeighboursOptions(measurer="tiny", device="cpu", vocabs=(str(vocab_file),), k=5,
                                         contexts=(CONTEXTS[0],))
    got = ldmprobe.query_neighbours("poor", options).to_dict()["neighbours"]
    assert got == json.loads(result.stdout)["neighbours"] and len(got) == 5


def test_cli_jsonl_one_record_per_line(cli, tiny_measurer, private_cache, vocab_file):
    result = CliRunner().invoke(cli, ["neighbours", "poor", "--measurer", "tiny", "--device", "cpu",
                                      "--vocab", str(vocab_file), "-k", "6", "--format", "jsonl",
                                      "--context", CONTEXTS[0]])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 6
    records = [json.loads(line) for line in lines]
    for record in records:
        validator("#/$defs/record").validate(record)
    assert [r["rank"] for r in records] == list(range(1, 7))
    assert {r["term"] for r in records} == {"poor"} and {r["space"] for r in records} == {"text"}


@pytest.mark.slow
def test_cli_table(cli, tiny_measurer, private_cache, vocab_file):
    result = CliRunner().invoke(cli, ["neighbours", "villa", "--measurer", "tiny", "--device", "cpu",
                                      "--vocab", str(vocab_file), "-k", "3", "--format", "table"])
    assert result.exit_code == 0, result.output
    for fragment in ("neighbours of 'villa'", "rank", "word", "score", "█", "numbers mean nothing"):
        assert fragment in result.stdout, fragment
    assert len([line for line in result.stdout.splitlines() if "█" in line]) == 3


@pytest.mark.slow
def test_cli_k_larger_than_vocabulary_warns(cli, tiny_measurer, private_cache, tmp_path):
    path = tmp_path / "three.txt"
    path.write_text("hut\nvilla\nmansion\n")
    result = CliRunner().invoke(cli, ["neighbours", "house", "--measurer", "tiny", "--device", "cpu",
                                      "--vocab", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["neighbours"]) == 3
    assert "only 3 entries" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["", ], "term is empty"),
    (["   "], "term is empty"),
    (["fancy", "-k", "0"], "-k must be a positive"),
    (["fancy", "-k", "-3"], "-k must be a positive"),
    (["fancy", "--context", "a photo of a house"], "has no {} placeholder"),
    (["fancy", "--context", "a {} photo of a {} house"], "has 2 {} placeholders"),
    (["fancy", "--context", "a {} house", "--context", "a {} house"], "given twice"),
    (["fancy", "--vocab", "EMPTY"], "empty.txt is empty"),
    (["fancy", "--vocab", "MISSING"], "missing.txt"),
    (["fancy", "--vocab", "no-such-list"], "vocabulary 'no-such-list' not found"),
    (["fancy", "--images", "0"], "--images"),
])
def test_cli_errors_exit_2(cli, tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("# nothing here\n\n")
    args = [{"EMPTY": str(tmp_path / "empty.txt"), "MISSING": str(tmp_path / "missing.txt")}.get(a, a)
            for a in args]
    result = CliRunner().invoke(cli, ["neighbours", *args, "--measurer", "tiny", "--device", "cpu"])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert message in result.stderr
    assert result.stdout == ""


def test_prompt_over_the_token_limit_is_an_error(tiny_measurer, private_cache, words):
    long_context = "a photo of a {} house " + "with a very long garden " * 16
    with pytest.raises(BadInputError, match="over the measurer's limit of 77"):
        find_neighbours(tiny_measurer, "fancy", words, contexts=[long_context])


@pytest.mark.slow
def test_no_torch_on_import_or_help(cli):
    code = (
        "import sys\n"
        "import ldmprobe.specs.vocab, ldmprobe.analysis.neighbours, ldmprobe.engine.vocab_store, ldmprobe.usecases.neighbours\n"
        "from ldmprobe.cli.main import main\n"
        "from ldmprobe.cli.neighbours import neighbours\n"
        "assert 'torch' not in sys.modules, 'import'\n"
        "if 'neighbours' not in main.commands:\n"
        "    main.add_command(neighbours)\n"
        "try:\n"
        "    main(['neighbours', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'help'\n"
        "ldmprobe.specs.vocab.load_vocabulary()\n"
        "assert 'torch' not in sys.modules, 'vocabulary'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "--keep-self" in out.stdout and "--context" in out.stdout
