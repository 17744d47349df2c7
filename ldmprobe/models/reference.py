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
REFERENCE_NOTE = ("made with the shipped reference world (a small model trained on synthetic pictures with "
                  "planted associations): the numbers are true of that world, not of any real model")


def reference_folder(role: str) -> Path:
    """The shipped ``generator`` or ``measurer`` folder; a clear error when it is missing."""
    folder = REFERENCE_WEIGHTS / role
    if not (folder / MARKER).is_file():
        raise ModelUnavailableError(
            f"The reference world's {role} is missing from this install ({folder}). Reinstall ldmprobe "
            "from a full checkout (the weights are part of the repository), or rebuild them with "
            "`python -m ldmprobe.reference.train --work WORK_DIR` (hours on a CPU, minutes on a GPU)."
        )
    return folder


def is_reference_folder(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()
