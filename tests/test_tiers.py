"""The test tiers: every module, fixture and test that conftest's hook marks slow exists, so a
rename cannot silently move slow tests into the fast tier (``-m "not slow"``)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _defined(module: str) -> set[str]:
    """Names of the functions a test module (or conftest) defines at top level."""
    tree = ast.parse((TESTS / module).read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_slow_modules_exist(tier_tables):
    missing = sorted(m for m in tier_tables["modules"] if not (TESTS / m).is_file())
    assert not missing, f"SLOW_MODULES names modules that are gone: {missing}"


def test_slow_fixtures_exist(tier_tables):
    everywhere = set().union(*(_defined(p.name) for p in TESTS.glob("*.py")))
    missing = []
    for entry in tier_tables["fixtures"]:
        module, _, name = entry.rpartition("::")
        if name not in (_defined(module) if module else everywhere):
            missing.append(entry)
    assert not missing, f"SLOW_FIXTURES names fixtures that are gone: {sorted(missing)}"


def test_slow_tests_exist(tier_tables):
    missing = []
    for entry in tier_tables["tests"]:
        module, _, name = entry.partition("::")
        if not (TESTS / module).is_file() or name not in _defined(module):
            missing.append(entry)
    assert not missing, f"SLOW_TESTS names tests that are gone: {sorted(missing)}"


def test_the_checks_see_a_missing_name():
    assert "tier_tables" in _defined("conftest.py") and "no_such_fixture" not in _defined("conftest.py")
