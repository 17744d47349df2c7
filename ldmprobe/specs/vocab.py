"""Vocabularies for ``ldmprobe neighbours``: CLIP's own whole words, shipped lists, user files.

A vocabulary is an ordered, deduplicated tuple of entries (words or short phrases). The
default, ``clip-bpe``, is every word-final token of CLIP's BPE vocabulary that is made only
of letters, lowercased: ~33k words CLIP can see as a single token. Shipped lists live in
``prompts/vocab/NAME.txt``; user files use the same format: one entry per line, ``#`` starts
a comment (a whole line, or after whitespace at the end of an entry), blank lines ignored.

Nothing here imports torch: the BPE file is read straight from open_clip's installed folder,
and the extracted word list is kept in the cache (``vocab/``) so later queries skip the work.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import hashlib
import importlib.util
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ldmprobe.store.word_lists import read_word_list, word_list_path, write_word_list
from ldmprobe import resources
from ldmprobe.specs.clip_bpe import N_MERGES
from ldmprobe.errors import BadInputError, LdmprobeError

__all__ = [
    "DEFAULT_VOCAB",
    "Vocabulary",
    "available_vocabularies",
    "clip_bpe_words",
    "load_vocabulary",
    "parse_vocab_text",
    "read_vocab_file",
]

#: The name of the built-in default vocabulary (CLIP's BPE whole words).
DEFAULT_VOCAB = "clip-bpe"

_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
#: Bumped when the extraction rule changes (the cached word list is then rebuilt).
_WORDS_VERSION = 1
_INLINE_COMMENT = re.compile(r"\s#.*$")


@dataclass(frozen=True)
class Vocabulary:
    """An ordered, deduplicated list of entries, and where they came from."""

    words: tuple[str, ...]
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.words)

    @functools.cached_property
    def content_hash(self) -> str:
        """sha256 of the entries in order (the rows of a cached embedding matrix follow it)."""
        text = json.dumps(list(self.words), ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict:
        return {"sources": list(self.sources), "size": len(self.words), "sha256": self.content_hash}


# --------------------------------------------------------------------------- CLIP's BPE words


def _bpe_path() -> Path:
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing torch
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / _BPE_FILE
        if path.is_file():
            return path
    raise LdmprobeError(
        f"CLIP's BPE vocabulary ({_BPE_FILE}) was not found in the installed open_clip package, "
        "so the default vocabulary cannot be built. Reinstall open_clip_torch, or pass "
        "--vocab with a shipped list or a file."
    )


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2/CLIP's byte-to-unicode table (printable bytes map to themselves)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _token_text(token: str) -> str | None:
    """A byte-level BPE token as the text it stands for (None if it is not whole UTF-8)."""
    if token.isascii():
        return token  # printable ASCII is its own byte-level character
    decoder = _byte_decoder()
    try:
        return bytes(decoder[c] for c in token).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return None  # part of a multi-byte character


def _extract_clip_bpe_words(path: Path) -> tuple[str, ...]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        merges = list(itertools.islice(fh, 1, N_MERGES + 1))
    # the vocabulary's order: the 256 byte-characters ending a word, then the joined merges
    stems = list(_byte_decoder())
    stems += [first + second[:-4] for first, _, second in (m.rstrip("\n").partition(" ") for m in merges)
              if second.endswith("</w>")]
    words: dict[str, None] = {}
    for stem in stems:
        text = _token_text(stem)
        if text and text.isalpha():
            words.setdefault(text.lower(), None)
    return tuple(words)


@functools.lru_cache(maxsize=1)
def clip_bpe_words() -> tuple[str, ...]:
    """Word-final tokens of CLIP's BPE vocabulary made only of letters, lowercased, deduplicated.

    In vocabulary order: the single characters first, then merges in the order BPE learnt
    them (roughly by frequency). Extracted once per BPE file and kept in the cache as a
    checksummed text file, so a query does not pay for the extraction.
    """
    source = _bpe_path()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    path = word_list_path(f"clip-bpe-v{_WORDS_VERSION}-{digest[:20]}")
    words = read_word_list(path)
    if words is None:
        words = _extract_clip_bpe_words(source)
        write_word_list(path, words)
    return words


# --------------------------------------------------------------------------- lists and files


def parse_vocab_text(text: str) -> list[str]:
    """Entries of a vocabulary file: one per line, ``#`` comments and blank lines skipped.

    Whitespace inside an entry is collapsed; entries are deduplicated ignoring case (CLIP's
    tokenizer lowercases), keeping the first spelling.
    """
    seen: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        entry = " ".join(_INLINE_COMMENT.sub("", stripped).split())
        if entry:
            seen.setdefault(entry.casefold(), entry)
    return list(seen.values())


def read_vocab_file(path: Path) -> list[str]:
    """Read and parse one vocabulary file; errors name the file and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"vocabulary {path}: not UTF-8 text ({exc.reason} at byte {exc.start}). Save it as "
            "UTF-8, one entry per line."
        ) from None
    except OSError as exc:
        raise BadInputError(f"vocabulary {path}: cannot be read ({exc.strerror or exc}).") from None
    entries = parse_vocab_text(text)
    if not entries:
        raise BadInputError(
            f"vocabulary {path} is empty: every line is blank or a # comment. Write one word "
            "or phrase per line."
        )
    return entries


def available_vocabularies() -> list[str]:
    """Names ``--vocab`` accepts besides paths: the default and the shipped lists."""
    try:
        shipped = resources.list_shipped("vocab", ".txt")
    except FileNotFoundError:
        shipped = []
    return [DEFAULT_VOCAB, *shipped]


def _resolve(name: str) -> tuple[Path | None, str]:
    """(file to read, how the source is recorded): a user file by its path, a shipped list by
    its name, the built-in default as (None, "clip-bpe")."""
    path = Path(name).expanduser()
    if path.is_file():
        return path, str(path)
    if path.is_dir():
        raise BadInputError(f"vocabulary {path} is a folder; give a text file with one entry per line.")
    if name == DEFAULT_VOCAB:
        return None, DEFAULT_VOCAB
    bare = bool(name) and "/" not in name and "\\" not in name
    shipped = resources.find_shipped(name, "vocab", (".txt",)) if bare else None
    if shipped is not None:
        return shipped, shipped.stem
    known = available_vocabularies()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise BadInputError(
        f"vocabulary {name!r} not found: there is no file at {path.resolve()}"
        + (" and no shipped list of that name" if bare else "")
        + f" (shipped: {', '.join(known)}).{hint} Give a shipped name or the path of a text "
        "file with one entry per line."
    )


def load_vocabulary(names: Sequence[str] = ()) -> Vocabulary:
    """Combine vocabularies by name or path (none given: the default), deduplicated in order."""
    lists: list[Sequence[str]] = []
    sources: list[str] = []
    for name in list(names) or [DEFAULT_VOCAB]:
        path, source = _resolve(name.strip())
        lists.append(clip_bpe_words() if path is None else read_vocab_file(path))
        sources.append(source)
    if len(lists) == 1:  # each list is already deduplicated
        return Vocabulary(words=tuple(lists[0]), sources=tuple(sources))
    seen: dict[str, str] = {}
    for entries in lists:
        for entry in entries:
            seen.setdefault(entry.casefold(), entry)
    return Vocabulary(words=tuple(seen.values()), sources=tuple(sources))
