"""docs/ARCHITECTURE.md names only modules, functions and files that exist: every backticked
dotted name (``store.files``, ``engine.sweep_setup.make_plan``, ``digest.CACHE_KINDS``) resolves
under ldmprobe/, and every backticked path (``cli/main.py:_register_commands``) exists."""

from __future__ import annotations

import ast
import glob
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ldmprobe"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
FOUNDATION = ("errors", "records", "digest", "reporting", "resources", "threads", "api", "__init__", "__main__")
SUFFIXES = ("md", "toml", "json", "png", "npy", "html", "j2", "jsonl")


def _module_file(parts: list[str]) -> Path | None:
    path = PKG.joinpath(*parts)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return path / "__init__.py" if (path / "__init__.py").is_file() else None


def _defines(path: Path, chain: list[str]) -> bool:
    """``chain`` (a name, then names inside it: Class.method) is defined at the top of ``path``."""
    scope = ast.parse(path.read_text(encoding="utf-8")).body
    for name in chain:
        found = None
        for node in scope:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                found = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    found = node
        if found is None:
            return False
        scope = getattr(found, "body", [])
    return True


def missing_names(text: str) -> list[str]:
    missing = []
    for token in re.findall(r"`([^`\n]+)`", text):
        for piece in re.split(r"[ ,]+", token.strip()):
            piece = piece.strip("()")
            if "NAME" in piece or "<" in piece or piece.startswith(("-", "$", "/", "obj.")) or "=" in piece:
                continue  # placeholders, flags, environment, absolute paths, code
            if "/" in piece or piece.endswith(".py"):
                path, _, name = piece.partition(":")
                hits = glob.glob(str(ROOT / path)) or glob.glob(str(PKG / path))
                if not hits or (name and not _defines(Path(hits[0]), [name])):
                    missing.append(piece)
            elif re.fullmatch(r"[a-z_][a-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)+", piece):
                parts = piece.split(".")
                if parts[-1] in SUFFIXES:
                    continue
                k = next((k for k in range(len(parts), 0, -1) if _module_file(parts[:k])), 0)
                if not k or (parts[k:] and not _defines(_module_file(parts[:k]), parts[k:])):
                    missing.append(piece)
            elif piece in FOUNDATION and not _module_file([piece]):
                missing.append(piece)
    return sorted(set(missing))


def test_architecture_names_what_exists():
    assert missing_names(DOC.read_text(encoding="utf-8")) == []


def test_a_name_that_does_not_exist_is_found():
    text = ("`store.files` `store.files.cache_root` `cli/main.py:_register_commands` "
            "`store.nowhere` `store.files.no_such_function` `cli/main.py:_no_such` `render/none.py` "
            "`cli/NAME.py`")
    assert missing_names(text) == ["cli/main.py:_no_such", "render/none.py", "store.files.no_such_function",
                                   "store.nowhere"]
