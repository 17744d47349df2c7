"""The generator tokenizer's token counts per prompt, cached as one JSON file per tokenizer,
with a digest over the counts checked on every read (issue 28).

A count edited or damaged in place (``"a red car": 99``) would refuse a valid spec ("99 tokens
> 77") at every run; with the digest such a file is found, reported once, and the prompts are
counted again. Files written before the digest (a bare ``{prompt: count}`` object) are counted
again without a report. Imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ldmprobe.store.files import atomic_write_text, cache_root
from ldmprobe.store import run_state

KIND = "token counts"
FOLDER = "token_counts"
NO_DIGEST = "no digest (written by an older version)"


def cached_counts(key: str) -> tuple[Path, dict[str, int]]:
    """Where the counts of the tokenizer with cache key ``key`` are kept, and those counts
    (:func:`read_counts`)."""
    path = cache_root() / FOLDER / f"{key[:24]}.json"
    return path, read_counts(path)


def _digest(counts: dict) -> str:
    canonical = json.dumps(counts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).hexdigest()


def check(document) -> tuple[dict[str, int], str | None]:
    """(counts, None) for a whole file, else ({}, why it cannot be used)."""
    if not isinstance(document, dict) or set(document) != {"counts", "digest"}:
        return {}, NO_DIGEST
    counts = document["counts"]
    if not isinstance(counts, dict) or document["digest"] != _digest(counts):
        return {}, "changed since it was cached (digest mismatch)"
    if not all(isinstance(k, str) and type(v) is int and v > 0 for k, v in counts.items()):
        return {}, "unreadable counts"
    return counts, None


def read_counts(path: Path) -> dict[str, int]:
    """The cached counts (empty when missing, older or damaged; damage is reported)."""
    path = Path(path)
    try:
        counts, reason = check(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        counts, reason = {}, "unreadable"
    if reason is not None and reason != NO_DIGEST:
        path.unlink(missing_ok=True)  # reported once, not by every reader this run
        run_state.current.record_repair(KIND, reason)
    return counts


def check_file(path: Path) -> str | None:
    """Why a token-count file is damaged (``cache verify``), or None (an older file is not damage)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable JSON"
    reason = check(document)[1]
    return None if reason in (None, NO_DIGEST) else reason


def write_counts(path: Path, counts: dict[str, int]) -> None:
    atomic_write_text(Path(path), json.dumps({"counts": counts, "digest": _digest(counts)}, ensure_ascii=False))
