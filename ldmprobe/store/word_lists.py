"""Word lists extracted once and kept in the cache (``vocab/NAME.txt``), so a later query skips
the extraction: a ``# sha256=`` line over the body, then one entry per line. A file whose
checksum does not match is treated as missing (extracted again and rewritten)."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from ldmprobe.store.files import atomic_write_text, cache_root


def word_list_path(name: str) -> Path:
    return cache_root() / "vocab" / f"{name}.txt"


def _header(body: str) -> str:
    return f"# sha256={hashlib.sha256(body.encode('utf-8')).hexdigest()}"


def read_word_list(path: Path) -> tuple[str, ...] | None:
    """A cached word list whose checksum line matches its body, else None."""
    try:
        header, _, body = path.read_text(encoding="utf-8").partition("\n")
    except (OSError, UnicodeDecodeError):
        return None
    if header != _header(body) or not body:
        return None
    return tuple(body.split("\n"))


def write_word_list(path: Path, words: tuple[str, ...]) -> None:
    """Keep ``words`` at ``path``; an unwritable cache only costs the next query the extraction."""
    body = "\n".join(words)
    with contextlib.suppress(OSError):
        atomic_write_text(path, f"{_header(body)}\n{body}")
