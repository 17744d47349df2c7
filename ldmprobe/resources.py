"""Where the shipped data (prompt specs, vocabularies, association tests) lives.

In a source checkout it is the top-level ``prompts/`` folder; in an installed wheel it is
packaged as ``ldmprobe/_prompts`` (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def prompts_dir() -> Path:
    """The folder holding the shipped prompt specs, vocabularies and association tests."""
    for candidate in (_PACKAGE_DIR / "_prompts", _PACKAGE_DIR.parent / "prompts"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("ldmprobe's shipped prompts/ folder is missing from this install")


def find_shipped(name: str, subdir: str = "", suffixes: tuple[str, ...] = (".toml",)) -> Path | None:
    """Resolve a bare name such as ``fancy-house`` to a shipped file, or None."""
    if "/" in name or "\\" in name:
        return None
    base = prompts_dir() / subdir if subdir else prompts_dir()
    for suffix in ("", *suffixes):
        candidate = base / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def list_shipped(subdir: str = "", suffix: str = ".toml") -> list[str]:
    """Names (without suffix) of the shipped files in a subfolder of prompts/."""
    base = prompts_dir() / subdir if subdir else prompts_dir()
    if not base.is_dir():
        return []
    return sorted(p.name[: -len(suffix)] for p in base.iterdir() if p.name.endswith(suffix))


def schema_path(name: str) -> Path:
    """A JSON Schema shipped in ``ldmprobe/schemas`` (``sweep``, ``neighbours``, ``assoc``)."""
    return _PACKAGE_DIR / "schemas" / f"{name}.schema.json"
