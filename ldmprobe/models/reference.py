"""Where the shipped reference world's model folders are, and how to recognise them.

The reference world (``ldmprobe/reference``) is a small trained generator and measurer on a
synthetic world with planted associations; its folders are ordinary diffusers and open_clip
folders loaded through the same code as any local model. Found by path, not by import, so
resolving a preset imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path

from ldmprobe.errors import ModelUnavailableError

REFERENCE_WEIGHTS = Path(__file__).resolve().parents[1] / "reference" / "weights"
MARKER = "ldmprobe_reference.json"
#: sha256 of every other file of a shipped folder, written when the weights are exported.
DIGESTS = "ldmprobe_digests.json"
REFERENCE_NOTE = ("made with the shipped reference world (a small model trained on synthetic pictures with "
                  "planted associations): the numbers are true of that world, not of any real model")


def reference_folder(role: str) -> Path:
    """The shipped ``generator`` or ``measurer`` folder; a clear error when it is missing."""
    folder = REFERENCE_WEIGHTS / role
    if not (folder / MARKER).is_file():
        raise ModelUnavailableError(
            f"The reference world's {role} is missing from this install ({folder}). Reinstall ldmprobe "
            "from a full checkout (the weights are part of the repository), or rebuild them with "
            "`python -m reference_world.train --world 2 --work WORK_DIR` (hours on a CPU, minutes on a GPU) "
            "and ship them with `python scripts/ship_world2.py WORK_DIR/weights`."
        )
    return folder


def is_reference_folder(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != DIGESTS and "__pycache__" not in p.parts}


def write_digests(folder: Path) -> Path:
    """List the sha256 of every file of a reference folder in its :data:`DIGESTS` file."""
    import json

    from ldmprobe.models.weights_hash import hash_file as sha256_file

    folder = Path(folder)
    listing = {name: sha256_file(path) for name, path in _files(folder).items()}
    target = folder / DIGESTS
    target.write_text(json.dumps(listing, indent=1, sort_keys=True) + "\n")
    return target


def damaged_files(folder: Path) -> list[str]:
    """What differs from the folder's digest list: changed, missing and unlisted files (each
    hashed again; nothing is trusted by size or date). A folder without a list has nothing to check."""
    import json

    from ldmprobe.models.weights_hash import hash_file as sha256_file

    folder = Path(folder)
    try:
        listed = json.loads((folder / DIGESTS).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        return [f"{DIGESTS} (unreadable)"]
    present = _files(folder)
    bad = [f"{name} (changed)" for name, path in present.items() if name in listed and sha256_file(path) != listed[name]]
    bad += [f"{name} (missing)" for name in sorted(set(listed) - set(present))]
    bad += [f"{name} (not part of the shipped folder)" for name in sorted(set(present) - set(listed))]
    return bad


def check_reference(folder: Path) -> None:
    """Refuse a shipped reference folder whose files differ from its digest list (before loading)."""
    if not is_reference_folder(folder):
        return
    bad = damaged_files(folder)
    if bad:
        raise ModelUnavailableError(
            f"The shipped reference world's folder {folder} is damaged: {'; '.join(bad[:5])}"
            f"{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}. Its numbers would not be the reference "
            "world's. Reinstall ldmprobe (or `git checkout -- ldmprobe/reference/weights` in a checkout).")
