"""Memory flat in the number of images (issue 32): the compact records, the image grid, the
report's streaming read of items.jsonl and unit_rows by blocks give the same answers as the
per-object forms they replace."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from ldmprobe.analysis.image_grid import ImageGrid
from ldmprobe.analysis.inference_core import CHUNK, unit_rows
from ldmprobe.analysis.sweep import StatisticsSettings, analyse_sweep
from ldmprobe.engine.sweep_images import ItemRecords
from ldmprobe.records import to_json
from ldmprobe.usecases.sweep import image_grid
from tests.test_sweep_analysis import planted

SETTINGS = StatisticsSettings(permutations=99, bootstrap=99, seed=3)


def _grid_of(data):
    """The ImageGrid holding exactly the cells of ``data.images`` (a dict)."""
    terms = (data.baseline, *data.terms, *data.controls)
    shape = (len(data.templates), len(terms), len(data.seeds))
    dim = next(len(c.embedding) for c in data.images.values() if c.embedding is not None)
    vectors = np.full((*shape, dim), np.nan, np.float32)
    has, failed, nsfw = (np.zeros(shape, bool) for _ in range(3))
    for (t, term, seed), cell in data.images.items():
        at = (t, terms.index(term), data.seeds.index(seed))
        if cell.embedding is not None:
            vectors[at], has[at] = cell.embedding, True
        failed[at], nsfw[at] = cell.failed, cell.nsfw
    return ImageGrid(terms, data.seeds, vectors, has, failed, nsfw)


@pytest.mark.parametrize("case", [
    dict(),
    dict(controls=2, wordy=True),
    dict(failed={(0, "red", 1), (1, "", 2)}, nsfw={(0, "blue", 3), (1, "red", 0)}, drop_nsfw=True, controls=1),
    dict(bad={(0, "red", 2): "nan", (1, "blue", 1): "zero"}, controls=1),
    dict(failed={(t, "blue", s) for t in range(2) for s in range(8)}, controls=1),  # a term with no embedding
])
def test_the_analysis_of_an_image_grid_is_the_analysis_of_the_same_cells_as_a_dict(case):
    data = planted(**case)
    grid = _grid_of(data)
    assert sorted(grid) == sorted(data.images) and len(grid) == len(data.images)
    for cell, given in data.images.items():
        held = grid[cell]
        assert (held.failed, held.nsfw, held.embedding is None) == (given.failed, given.nsfw, given.embedding is None)
        assert given.embedding is None or np.array_equal(held.embedding, given.embedding, equal_nan=True)
    on_grid = analyse_sweep(data.__class__(**{**data.__dict__, "images": grid}), SETTINGS)
    assert to_json(on_grid) == to_json(analyse_sweep(data, SETTINGS))


def test_an_image_grid_refuses_what_it_cannot_hold():
    shape = (2, 3, 4)
    with pytest.raises(ValueError):
        ImageGrid(("", "a", "b"), range(4), np.zeros((*shape, 5), np.int64), *(np.zeros(shape, bool),) * 3)
    with pytest.raises(ValueError):
        ImageGrid(("", "a"), range(4), np.zeros((*shape, 5)), *(np.zeros(shape, bool),) * 3)
    grid = ImageGrid(("", "a", "b"), range(4), np.zeros((*shape, 5)), *(np.zeros(shape, bool),) * 3)
    for missing in [(2, "a", 0), (0, "c", 0), (0, "a", 4), (-1, "a", 0)]:
        with pytest.raises(KeyError):
            grid[missing]


def _items(templates=2, terms=("", "x", "y"), seeds=(0, 1, 2)):
    return [SimpleNamespace(key=f"{t}-{term}-{s}", template_index=t, term=term, seed=s)
            for t in range(templates) for term in terms for s in seeds]


def test_item_records_answer_as_a_dict_of_item_records():
    items = _items()
    records = ItemRecords(items + items[:2])  # a key listed twice is one record
    assert list(records) == [i.key for i in items] and len(records) == len(items)
    rng = np.random.default_rng(0)
    given = {}
    for i, item in enumerate(items):
        if i % 5 == 1:
            records.failed[i] = "nan"
        else:
            given[item.key] = rng.normal(size=4).astype(np.float32)
            records.set_embedding(i, given[item.key])
        records.set_nsfw(i, [None, True, False, "unsure"][i % 4])
        records.cached[i] = i % 3 != 0
    odd = np.arange(3.0)  # another shape: kept as given
    records.set_embedding(records.row(items[1].key), odd)
    for i, item in enumerate(items):
        record = records[item.key]
        assert record.item is item and record.cached == (i % 3 != 0)
        assert record.failed == ("nan" if i % 5 == 1 else None)
        assert record.nsfw is [None, True, False][i % 4] if i % 4 < 3 else record.nsfw == "unsure"
        if i == 1:
            assert record.embedding is odd
        elif item.key in given:
            assert np.array_equal(record.embedding, given[item.key])
            assert record.embedding.dtype == np.float32
        else:
            assert record.embedding is None
    assert not records.uniform and "nope" not in records
    with pytest.raises(KeyError):
        records["nope"]


@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("in_memory", [False, True])
def test_the_sweeps_image_grid_reads_the_records_rows_in_plan_order(shuffled, in_memory):
    items = _items()
    spec = SimpleNamespace(templates=("a {}", "b {}"), all_terms=("", "x", "y"), seeds=(0, 1, 2))
    order = np.random.default_rng(1).permutation(len(items)) if shuffled else np.arange(len(items))
    records = ItemRecords([items[i] for i in order], in_memory=in_memory)
    rng = np.random.default_rng(2)
    for i in range(len(records)):
        if i != 4:
            records.set_embedding(i, rng.normal(size=3))
    records.failed[4] = "black"
    records.set_nsfw(5, True)
    grid = image_grid(SimpleNamespace(spec=spec, items=items), records)
    assert grid.vectors is records.rows and records.rows.on_disk == (not in_memory)  # no copy of the embeddings
    for item in items:
        cell, record = grid[(item.template_index, item.term, item.seed)], records[item.key]
        assert cell.failed == (record.failed is not None) and cell.nsfw == bool(record.nsfw)
        assert (cell.embedding is None) == (record.embedding is None)
        if record.embedding is not None:
            assert np.array_equal(cell.embedding, record.embedding)
    records.set_embedding(0, np.zeros(2))  # another shape: no grid (the analysis gets a dict)
    assert image_grid(SimpleNamespace(spec=spec, items=items), records) is None


def test_the_report_keeps_only_the_items_it_shows(tmp_path):
    from ldmprobe.errors import BadInputError
    from ldmprobe.render.report import _shown_items

    lines = [{"term": "a", "image": "images/k1.png", "flags": {"failed": None}},
             {"term": "b", "image": None, "flags": {"failed": "nan"}},
             {"term": "c", "image": None, "flags": {"failed": None}}]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")
    assert _shown_items(tmp_path) == lines[:2]
    path.write_text(path.read_text() + "[1, 2]\n")
    with pytest.raises(BadInputError, match="line 5: every line must be a JSON object"):
        _shown_items(tmp_path)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "{not json\n")
    with pytest.raises(BadInputError, match="line 4 is not JSON"):
        _shown_items(tmp_path)
    path.unlink()
    assert _shown_items(tmp_path) == []  # a run folder without items.jsonl shows no image


def test_unit_rows_by_blocks_are_the_rows_one_by_one():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2 * CHUNK + 7, 5)).astype(np.float32)
    x[3], x[CHUNK + 1], x[-1] = np.nan, 0.0, 1e30
    rows, ok = unit_rows(x)
    for i in (0, 3, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, len(x) - 1):
        one_rows, one_ok = unit_rows(x[i:i + 1])
        assert np.array_equal(rows[i], one_rows[0], equal_nan=True) and ok[i] == one_ok[0]
    assert rows.dtype == np.float64 and ok.sum() == len(x) - 2


def test_the_manifests_key_table_answers_as_a_dict_of_first_entries():
    import hashlib

    from ldmprobe.store.image_index import _Keys

    rng = np.random.default_rng(5)
    hexes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(300)]
    names = hexes + ["short", "x" * 64 + "é", "has space" + "0" * 55, "0" * 64]
    written = [names[i] for i in rng.integers(0, len(names), 1000)]  # repeats: re-recorded images
    keys, first, more = _Keys(), {}, {}
    for start in range(0, 600, 150):  # blocks of the pattern's lines ...
        keys.extend(written[start:start + 150], start)
    for index in range(600, 1000):  # ... and lines of another layout, one by one
        assert keys.add(written[index], index)
    keys.freeze(got_more := {})
    for index, key in enumerate(written):
        if first.setdefault(key, index) != index:
            more.setdefault(key, []).append(index)
    assert got_more == more
    assert all(keys.get(key) == first.get(key) and (key in keys) == (key in first) for key in names + ["absent"])
    assert keys.add("f" * 64, 1000) and not keys.add("f" * 64, 1001) and not keys.add(written[0], 1002)
    assert keys.get("f" * 64) == 1000


def test_a_released_manifest_answers_as_before(tmp_path):
    import os

    from ldmprobe.store.image_index import ImageIndex

    index = ImageIndex(tmp_path)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(b"x" * (i + 1))
        index.record(f"{i:064x}", paths[-1], {"nsfw": i == 1})
    answers = [index.flag(f"{i:064x}", os.stat(p)) for i, p in enumerate(paths)]
    own = index._own
    index.release()
    assert index._first is None and len(index._flag) == 0 and index._own == own
    assert [index.flag(f"{i:064x}", os.stat(p)) for i, p in enumerate(paths)] == answers == [False, True, False]


def _held_by_the_analysis(n_seeds: int, *, in_memory: bool = False, as_list: bool = False) -> int:
    """Traced bytes still held once a sweep's plan, records, image grid and every term's cells
    are made (what the analysis keeps from start to end), for 2 templates x 4 modifiers x
    ``n_seeds`` items with 64-d embeddings. ``in_memory`` / ``as_list``: the embeddings held in
    memory, the plan as a list of WorkItems (what the compact forms replace)."""
    import gc
    import tracemalloc

    from ldmprobe.analysis.sweep_terms import term_cells
    from ldmprobe.engine.workitems import _key_text_parts, _work_item_list, work_items
    from tests.test_plan import make_recipe, make_spec

    spec = make_spec(terms=("fancy", "poor", "old"), seeds=tuple(range(n_seeds)))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(64, 64)).astype(np.float32)  # a few rows, reused: made before tracing
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        recipe = make_recipe()
        items = _work_item_list(spec, recipe, _key_text_parts(recipe)) if as_list else work_items(spec, recipe)
        records = ItemRecords(items, in_memory=in_memory)
        for i in range(len(records)):
            records.set_embedding(i, vectors[i % 64])
        grid = image_grid(SimpleNamespace(spec=spec, items=items), records)
        data = SimpleNamespace(templates=spec.templates, seeds=spec.seeds, images=grid, drop_nsfw=False)
        cells = {term: term_cells(data, term) for term in spec.all_terms}
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert all(c.usable.all() for c in cells.values()) and grid is not None
    return held


def test_what_the_analysis_holds_stays_flat_in_the_number_of_images():
    small, large = 250, 2500  # 2,000 and 20,000 items
    extra = 8 * (large - small)

    def growth(**how) -> float:
        _held_by_the_analysis(small, **how)  # once first: what is made once per process is not counted
        return (_held_by_the_analysis(large, **how) - _held_by_the_analysis(small, **how)) / extra

    # bytes per extra image: the 32-byte key and its sorted copy and position, a few flags and row numbers
    assert growth() < 128
    # what it replaced grows by the embedding itself (64 x 4 bytes) or a WorkItem and its key string
    for replaced in (dict(in_memory=True), dict(as_list=True)):
        assert growth(**replaced) > 250, replaced
