"""Reading spec files (sweep and association specs): lookup, text, TOML errors, type names."""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from collections.abc import Callable
from typing import Any

from ldmprobe import resources
from ldmprobe.errors import SpecError


def is_int(value: Any) -> bool:
    """An int that is not a bool (TOML's true is not a seed count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def type_name(value: Any) -> str:
    """How a TOML value's type reads in an error message."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", tuple: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def first_time(seen: dict, key: Any, value: Any, refuse: Callable[[Any], str]) -> None:
    """Note ``key`` (with ``value``) in ``seen``; a key noted before is refused with
    ``refuse(the value noted with it)`` (a list's duplicate entries, one message per list)."""
    if key in seen:
        raise SpecError(refuse(seen[key]))
    seen[key] = value


def check_str_list(value: Any, label: str, key: str, example: str) -> None:
    """Refuse a single string (``write KEY = ["..."]``) or a non-list (``write EXAMPLE``) where a
    list of strings belongs; ``label`` is where in the file."""
    if isinstance(value, str):
        raise SpecError(f"{label}: {key} must be a list of strings, not a single string; write {key} = [{value!r}].")
    if not isinstance(value, (list, tuple)):
        raise SpecError(f"{label}: {key} must be a list of strings, not {type_name(value)}; write {example}.")


def resolve(path_or_name: str | Path, *, subdir: str = "", what: str = "spec", folder_fix: str) -> Path:
    """A spec file by path, or a shipped one by bare name; SpecError naming what was looked for."""
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise SpecError(f"{path} is a folder, not a{'n' if what[0] in 'aeiou' else ''} {what} file. {folder_fix}")
    name = str(path_or_name)
    bare = bool(name) and "/" not in name and "\\" not in name
    shipped = resources.find_shipped(name, subdir=subdir) if bare else None
    if shipped is not None:
        return shipped
    try:
        available = resources.list_shipped(subdir)
    except FileNotFoundError:
        available = []
    close = difflib.get_close_matches(name.removesuffix(".toml"), available, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    looked = f"looked for a file at {path.resolve()}"
    if bare:
        looked += f" and for a shipped {what} named {name!r}"
    raise SpecError(
        f"{what} {name!r} not found: {looked} (shipped {what}s: {', '.join(available) or 'none found'}).{hint} "
        f"Give the path of an existing {what} file, or one of the shipped names."
    )


def read_text(path: Path) -> str:
    """The file as UTF-8 text, or a SpecError saying why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}). Save the spec as UTF-8.") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise SpecError(f"{path} line {line}: holds a NUL character (byte 0); a spec is text. Remove it (is this "
                        "a binary file, or one saved as UTF-16?).")
    return text


def read_spec_file(path_or_name: str | Path, *, what: str, folder_fix: str, syntax_hint: str,
                   subdir: str = "") -> tuple[Path, str, dict[str, Any] | None]:
    """:func:`resolve`, :func:`read_text`, then (a ``.toml`` file) :func:`load_toml`: the file's
    path, its text and its TOML table (None when the file is not TOML)."""
    path = resolve(path_or_name, subdir=subdir, what=what, folder_fix=folder_fix)
    text = read_text(path)
    return path, text, load_toml(path, text, syntax_hint=syntax_hint) if path.suffix.lower() == ".toml" else None


def load_toml(path: Path, text: str, *, syntax_hint: str) -> dict[str, Any]:
    """Parse TOML; a syntax error names the line and column and quotes the line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        lineno, colno = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        msg = getattr(exc, "msg", None) or str(exc)
        if lineno is None:  # Python < 3.14 puts the position only in the text
            m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
            if m:
                lineno, colno = int(m.group(1)), int(m.group(2))
            msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
        where = f"line {lineno}, column {colno} (or just before it)" if lineno is not None else "the end of the file"
        snippet = ""
        lines = text.splitlines()
        if lineno is not None and 0 < lineno <= len(lines):
            snippet = f" (the line reads: {lines[lineno - 1].strip()!r})"
        raise SpecError(
            f"{path} line {lineno if lineno is not None else '?'}: TOML syntax error at {where}: "
            f"{msg}{snippet}. {syntax_hint}"
        ) from None
    where = _nul_in(data)
    if where is not None:
        raise SpecError(f"{path}: {where} holds a NUL character (\\u0000); terms, templates and names are printed "
                        "and written to files, where NUL cuts them short. Remove it.")
    return data


def _nul_in(value: Any, where: str = "") -> str | None:
    """The key path of the first string (key or value) holding NUL, else None."""
    if isinstance(value, str):
        return (where or "a value") if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        label = f"{where}.{key}" if isinstance(key, str) and where else f"{where}[{key}]" if where else str(key)
        if isinstance(key, str) and "\x00" in key:
            return label
        found = _nul_in(item, label)
        if found is not None:
            return found
    return None


#: The most pixels an image the user gives may have (8192 x 8192): far beyond what any measurer
#: needs (it resizes to 224 or so), and small enough that decoding it cannot exhaust memory.
MAX_IMAGE_PIXELS = 8192 * 8192


def check_image(data: bytes) -> None:
    """Open ``data`` as an image and verify it without decoding more than its header: an image
    over :data:`MAX_IMAGE_PIXELS` (a decompression bomb included) raises ``ValueError`` saying
    so; an unreadable one raises what PIL raises (``UnidentifiedImageError``, ``OSError``,
    ``SyntaxError``)."""
    import io
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ValueError(_too_large(width, height))
                image.verify()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            size = re.search(r"\((\d+) pixels\)", str(exc))
            raise ValueError(f"a decompression bomb or an image too large to decode safely "
                             f"({size.group(1) if size else 'too many'} pixels; at most {MAX_IMAGE_PIXELS:,} "
                             "are read); scale it down") from None


def _too_large(width: int, height: int) -> str:
    return (f"{width} x {height} pixels is more than the {MAX_IMAGE_PIXELS:,} (8192 x 8192) an image may have "
            "here; scale it down (the measurer reads it at about 224 x 224)")
