"""The warm rerun's bulk paths give what the per-key paths give (issue 32): the manifest read
without parsing recipes, bulk failure records, the plan's keys, the disk-space sample."""

from __future__ import annotations

import hashlib
import json
import os
from types import SimpleNamespace

import pytest
from PIL import Image

from ldmprobe.digest import digest
from ldmprobe.store import image_index
from ldmprobe.store.images import ImageStore
from ldmprobe.store.image_index import ImageIndex
from ldmprobe.engine.workitems import Recipe, item_key, key_document, work_items


def _keys(n: int) -> list[str]:
    return [hashlib.sha256(f"item {i}".encode()).hexdigest() for i in range(n)]


RECIPES = [
    {"key": "k", "prompt": "a house", "nsfw": True},
    {"key": "k", "prompt": "a house", "nsfw": False},
    {"key": "k", "prompt": "a house", "nsfw": None},
    {"key": "k", "prompt": "a house"},
    {"key": "k", "prompt": "an nsfw {house}", "nsfw": True},  # the word and braces in a prompt
    {"key": "k", "prompt": 'say "nsfw": true', "nsfw": False},  # the key's text quoted in a prompt
    {"key": "k", "pipeline": {"nsfw": True}},  # only nested: not the image's flag
    {"key": "k", "pipeline": {"nsfw": True}, "nsfw": False},
    {"key": "k", "nsfw": "maybe"},  # not a JSON literal: read from the recipe
    {"key": "k", "nsfw": 1},
    {},
]


def _recorded(tmp_path, recipes):
    index = ImageIndex(tmp_path / "images")
    keys = _keys(len(recipes))
    for key, recipe in zip(keys, recipes):
        (tmp_path / key).write_bytes(key.encode())
        index.record(key, tmp_path / key, recipe)
    return keys


@pytest.mark.parametrize("loaded_first", [False, True])
def test_flags_and_recipes_from_the_manifest_are_the_recorded_ones(tmp_path, loaded_first):
    index = ImageIndex(tmp_path / "images")
    if loaded_first:  # records made after the manifest was read: kept in memory as they are written
        index.known("x")
    keys = _keys(len(RECIPES))
    for key, recipe in zip(keys, RECIPES):
        (tmp_path / key).write_bytes(key.encode())
        index.record(key, tmp_path / key, recipe)
    for reader in (index, ImageIndex(tmp_path / "images")):  # this process, and a fresh one
        for key, recipe in zip(keys, RECIPES):
            st = os.stat(tmp_path / key)
            assert reader.matches(key, st)
            assert reader.flag(key, st) == recipe.get("nsfw") and type(reader.flag(key, st)) is type(recipe.get("nsfw"))
            assert reader.lookup(key, st) == recipe


def test_lines_as_record_writes_them_are_read_without_parsing_recipes(tmp_path, monkeypatch):
    keys = _recorded(tmp_path, RECIPES[:4])

    def refuse(*args, **kwargs):
        raise AssertionError("a recipe was parsed")

    monkeypatch.setattr(image_index.json, "loads", refuse)
    fresh = ImageIndex(tmp_path / "images")
    for key, recipe in zip(keys, RECIPES[:4]):
        st = os.stat(tmp_path / key)
        assert fresh.matches(key, st) and fresh.flag(key, st) == recipe.get("nsfw")


def test_other_layouts_torn_and_damaged_lines(tmp_path):
    folder = tmp_path / "images" / "index"
    folder.mkdir(parents=True)
    a, b, c, d = _keys(4)
    for key in (a, b, c, d):
        (tmp_path / key).write_bytes(key.encode())
    sa, sb, sc, sd = (os.stat(tmp_path / k) for k in (a, b, c, d))
    lines = [
        json.dumps({"k": a, "s": sa.st_size, "m": sa.st_mtime_ns, "i": sa.st_ino, "r": {"nsfw": True}}),  # unsorted
        json.dumps({"i": sb.st_ino, "k": b, "m": sb.st_mtime_ns, "r": {"nsfw": False}, "s": 2**70}, sort_keys=True),
        json.dumps({"i": sc.st_ino, "k": c, "m": sc.st_mtime_ns, "r": [1], "s": sc.st_size}, sort_keys=True),
        json.dumps({"i": sd.st_ino, "k": d, "m": sd.st_mtime_ns, "r": {"x": 1}, "s": sd.st_size}, sort_keys=True)[:-9],
    ]
    (folder / "old.jsonl").write_text("\n".join(lines) + "\n")
    index = ImageIndex(tmp_path / "images")
    assert index.matches(a, sa) and index.flag(a, sa) is True and index.lookup(a, sa) == {"nsfw": True}
    assert not index.matches(b, sb) and not index.known(b)  # a size no file has: not trusted
    assert not index.known(c)  # a recipe that is not a mapping
    assert not index.known(d)  # a torn last line


def test_a_changed_file_does_not_match_and_a_rerecorded_one_does(tmp_path):
    (key,) = _keys(1)
    index = ImageIndex(tmp_path / "images")
    path = tmp_path / key
    path.write_bytes(b"one")
    index.record(key, path, {"nsfw": False})
    path.write_bytes(b"longer")
    st = os.stat(path)
    fresh = ImageIndex(tmp_path / "images")
    assert not fresh.matches(key, st) and fresh.lookup(key, st) is None
    assert fresh.flag(key, st) is ImageIndex._NO_FLAG
    fresh.record(key, path, {"nsfw": True})
    for reader in (fresh, ImageIndex(tmp_path / "images")):
        assert reader.matches(key, st) and reader.flag(key, st) is True and reader.lookup(key, st) == {"nsfw": True}


def test_store_flags_and_valid_many_match_the_per_key_answers(tmp_path):
    store = ImageStore(tmp_path)
    keys = _keys(8)
    for i, key in enumerate(keys[:6]):
        store.save(key, Image.new("RGB", (8, 8), (i, 0, 0)), {"key": key, "nsfw": [True, False, None][i % 3]})
    store.save_failure(keys[6], {"failed": "black image"})
    path = store.path(keys[1])
    path.write_bytes(path.read_bytes()[:-5])  # truncated: not valid, removed
    fresh = ImageStore(tmp_path)
    per_key = {key for key in keys if ImageStore(tmp_path).valid(key)}
    assert ImageStore(tmp_path).valid_many(keys) == per_key == {keys[0], *keys[2:7]}
    for key in (keys[0], *keys[2:6]):
        assert fresh.nsfw(key, "missing") == fresh.metadata(key)["nsfw"]
    assert fresh.nsfw(keys[7], "missing") == "missing"


@pytest.mark.parametrize("list_from", [1, 10_000])
def test_bulk_failures_are_the_per_key_ones(tmp_path, list_from):
    store = ImageStore(tmp_path)
    keys = _keys(120)
    for key in keys[::5]:
        store.save_failure(key, {"failed": "out of memory"})
    for key in _keys(125)[120:]:  # outside the plan
        store.save_failure(key, {"failed": "nsfw"})
    store.save(keys[1], Image.new("RGB", (8, 8)), {"key": keys[1]})
    assert store.failures(keys, list_from=list_from) == {k for k in keys if store.failure(k) is not None}
    assert ImageStore(tmp_path / "empty").failures(keys, list_from=list_from) == set()


def _recipe(**extra) -> Recipe:
    return Recipe(pipeline={"class": "P", "fingerprint": "é" * 3, "list": [1, 2.5, None]},
                  scheduler={"class": "S", "config": {"beta": 0.1, "prompt": "x"}}, steps=4, guidance=7.5,
                  width=64, height=64, dtype="float32", **extra)


@pytest.mark.parametrize("prompt", ["a photo of a house", "", 'é "quoted" \\ {} \u2028 \x00 \U0001F600',
                                    "\x00ldmprobe-prompt\x00"])
@pytest.mark.parametrize("seed", [0, 7, 2**40])
def test_item_key_is_the_digest_of_the_key_document(prompt, seed):
    for recipe in (_recipe(), _recipe(negative_prompt="blurry")):
        assert item_key(recipe, prompt, seed) == digest(key_document(recipe, prompt, seed))


def test_item_key_checks_its_arguments_as_before():
    with pytest.raises(TypeError):
        item_key(_recipe(), 3, 0)
    for seed in (-1, 1.5, True):
        with pytest.raises(ValueError):
            item_key(_recipe(), "a", seed)


def test_work_items_keys_are_item_keys():
    from ldmprobe.specs.sweep import spec_from_dict

    spec = spec_from_dict({"name": "k", "templates": ["a {} house", "a house {}"], "baseline": "",
                           "terms": ["fancy", "old"], "seeds": [0, 1, 9]})
    recipe = _recipe()
    items = work_items(spec, recipe)
    assert items and all(item.key == digest(key_document(recipe, item.prompt, item.seed)) for item in items)


def test_disk_space_check_makes_paths_for_its_sample_only(tmp_path, monkeypatch):
    from ldmprobe.store import diskspace
    from ldmprobe.usecases import sweep as sweep_usecase

    store = ImageStore(tmp_path)
    keys = _keys(diskspace.SAMPLE * 3)
    asked = []
    real = store.path
    monkeypatch.setattr(store, "path", lambda key: asked.append(key) or real(key))
    seen = []
    monkeypatch.setattr(diskspace, "image_size_range", lambda w, h, paths: seen.append(list(paths)) or (1, 2))
    monkeypatch.setattr(diskspace, "check_space", lambda needs, reporter: None)
    setup = SimpleNamespace(recipe=SimpleNamespace(width=64, height=64), options=SimpleNamespace(write_images=False))
    to_make = set(keys[:5])
    sweep_usecase._check_disk_space(setup, store, [SimpleNamespace(key=k) for k in keys], to_make, None, None)
    assert asked == keys[5: 5 + diskspace.SAMPLE]
    assert seen == [[real(k) for k in keys[5: 5 + diskspace.SAMPLE]]]
