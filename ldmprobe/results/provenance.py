"""What every JSON document carries: schema version and provenance."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

from ldmprobe import SCHEMA_VERSION, __version__

_LIBRARIES = ("torch", "diffusers", "transformers", "open_clip_torch", "numpy", "scipy")


def now_iso() -> str:
    """Current UTC time in ISO 8601 with an explicit offset."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (no heavy imports)."""
    found: dict[str, str | None] = {"ldmprobe": __version__, "python": sys.version.split()[0]}
    for name in _LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the working folder was removed
        return None


def provenance(*, started: str, tiny: bool, device: str | None = None, dtype: str | None = None,
               finished: str | None = None, reference: bool = False, **extra) -> dict:
    """Provenance block: versions, platform, device, timestamps, the command line and working
    folder it ran with, the tiny and reference-world flags."""
    block = {
        "schema_version": SCHEMA_VERSION,
        "versions": library_versions(),
        "platform": platform.platform(),
        "device": device,
        "dtype": dtype,
        "started": started,
        "finished": finished or now_iso(),
        "tiny": tiny,
        "command": list(sys.argv),
        "cwd": _cwd(),
    }
    if tiny:
        block["tiny_note"] = "made with built-in tiny models that have random weights: the numbers mean nothing"
    if reference:
        from ldmprobe.models.reference import REFERENCE_NOTE

        block["reference_world"] = True
        block["reference_note"] = REFERENCE_NOTE
    block.update(extra)
    return block


def load_schema(name: str) -> dict:
    """A JSON Schema shipped in ``ldmprobe/schemas`` (``sweep``, ``neighbours``, ``assoc``)."""
    import json

    from ldmprobe.resources import schema_path

    return json.loads(schema_path(name).read_text())


def validate_document(document: dict, name: str) -> None:
    """Raise jsonschema.ValidationError when ``document`` breaks the named schema."""
    import jsonschema

    jsonschema.validate(document, load_schema(name), format_checker=jsonschema.FormatChecker())
