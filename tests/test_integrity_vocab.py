"""Issue 28 on the vocabulary and token-count caches: each entry carries a digest checked on
read, so flipped signs (unit norms kept) or an edited count are found, reported once, made
again, and reported by ``cache verify``; a damaged count never refuses a valid spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.store import run_state
from ldmprobe.cli.main import main
from ldmprobe.store.array_store import ArrayStore
from ldmprobe.specs.vocab import Vocabulary

WORDS = ("villa", "cottage", "castle", "garden", "river", "street", "palace", "forest")


def _verify() -> dict:
    result = CliRunner().invoke(main, ["cache", "verify", "--format", "json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def _flip_signs(path: Path) -> None:
    """Negate one row in place: still finite unit rows, same size (what the old check accepted)."""
    data = path.read_bytes()
    array = np.load(path)
    offset = data.index(array[0].tobytes())
    flipped = (-array[0]).tobytes()
    path.write_bytes(data[:offset] + flipped + data[offset + len(flipped):])
    assert np.allclose(np.linalg.norm(np.load(path), axis=1), 1.0, atol=1e-3)


def test_flipped_signs_in_cached_vocabulary_embeddings_are_found_and_remade(fresh_cache, tiny_measurer):
    from ldmprobe.engine.vocab_store import cached_vocabulary, embed_vocabulary

    vocabulary = Vocabulary(WORDS, ("test",))
    first = embed_vocabulary(tiny_measurer, vocabulary)
    assert first.status == "built" and _verify()["bad"] == []
    _flip_signs(first.path)
    found = _verify()
    assert [(row["kind"], row["path"]) for row in found["bad"]] == [("vocabulary embeddings", str(first.path))]
    run_state.current.repairs.clear()
    assert cached_vocabulary(tiny_measurer.identity, vocabulary) is None  # what a sweep asks first
    again = embed_vocabulary(tiny_measurer, vocabulary)  # then it embeds again
    assert again.status == "built" and np.array_equal(again.vectors, first.vectors)
    assert sum(run_state.current.repairs.values()) == 1  # reported once, not by each reader
    run_state.current.repairs.clear()
    assert embed_vocabulary(tiny_measurer, vocabulary).status == "hit" and _verify()["bad"] == []


def test_an_array_store_file_without_its_digest_is_made_again_silently(tmp_path):
    store = ArrayStore("text/vocab", root=tmp_path)
    store.save("ab" + "0" * 62, np.ones((2, 3), np.float32))
    path = store.path("ab" + "0" * 62)
    assert np.load(path).shape == (2, 3)  # still an ordinary .npy to any tool
    np.save(path, np.ones((2, 3), np.float32))  # as an older version wrote it
    run_state.current.repairs.clear()
    assert store.load("ab" + "0" * 62) is None and not run_state.current.repairs


SPEC = """\
name = "counts"
templates = ["a photo of a {} car"]
baseline = ""
terms = ["red"]
probes = ["fire", "ocean"]
seeds = 1
"""


def _sweep(tmp_path: Path, name: str):
    spec = tmp_path / "counts.toml"
    spec.write_text(SPEC)
    return CliRunner().invoke(main, ["sweep", str(spec), "--out", str(tmp_path / name), "--pipeline", "tiny",
                                     "--measurer", "tiny", "--steps", "2", "--format", "json", "--permutations",
                                     "99", "--bootstrap", "99", "--no-report"])


@pytest.mark.slow
def test_a_damaged_token_count_never_refuses_a_valid_spec(fresh_cache, tmp_path):
    assert _sweep(tmp_path, "a").exit_code == 0
    [path] = sorted((fresh_cache / "token_counts").glob("*.json"))
    document = json.loads(path.read_text())
    prompt = next(iter(document["counts"]))
    document["counts"][prompt] = 99  # valid JSON, a wrong count: over the limit of 77
    path.write_text(json.dumps(document))
    found = _verify()
    assert [(row["kind"], row["path"]) for row in found["bad"]] == [("token counts", str(path))]
    again = _sweep(tmp_path, "b")
    assert again.exit_code == 0, again.output
    assert "token counts 1" in again.stderr and "token counts 2" not in again.stderr
    assert json.loads(path.read_text())["counts"][prompt] < 77  # counted again and rewritten
    assert _verify()["bad"] == []
