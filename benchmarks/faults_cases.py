"""Issue 28's fault cases for ``benchmarks/faults.py``: an editor's re-save without the digest, bytes
damaged with the file's stat kept, same-size edits of configs and tokenizers, flipped signs in
vocabulary embeddings, a user's image replaced between listing and embedding, and a CUDA
out-of-memory in the middle of a sweep."""

from __future__ import annotations

import os
from pathlib import Path


def flip(path: Path, offset: int, n: int = 16) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        data = bytearray(fh.read(n))
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in data))


def resaved_without_digest(path: Path) -> bytes:
    """What an image editor does: pixels changed (inverted), the recipe chunk kept, the digest dropped."""
    import io

    from PIL import Image, ImageOps
    from PIL.PngImagePlugin import PngInfo

    with Image.open(path) as im:
        recipe = im.info["ldmprobe"]
        pixels = ImageOps.invert(im.convert("RGB"))
    info = PngInfo()
    info.add_text("ldmprobe", recipe)
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def flip_keeping_stat(path: Path, offset: int) -> None:
    """16 bytes flipped with size, mtime and inode unchanged (a disk error, or a tool restoring mtimes)."""
    st = path.stat()
    flip(path, offset)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def edit_same_size(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text and len(old) == len(new), (path, old)
    path.write_text(text.replace(old, new, 1))


def flip_signs_of_a_row(path: Path) -> None:
    """One row negated in place: still finite unit vectors (all the old check looked at)."""
    import numpy as np

    data = path.read_bytes()
    row = np.load(path)[0]
    at = data.index(row.tobytes())
    path.write_bytes(data[:at] + (-row).tobytes() + data[at + row.nbytes:])


#: Lists an image folder, replaces one file, then embeds: the embedding must not be stored under
#: the old content's key (prints the outcome on its last line).
USER_IMAGE_TRIAL = """
from pathlib import Path
from PIL import Image
from ldmprobe.engine.assoc_images import embed_image_folder, user_image_key
from ldmprobe.store.packed_cache import embedding_store
from ldmprobe.errors import BadInputError
from ldmprobe.models.load import load_measurer
from ldmprobe.models.sources import resolve_measurer
from ldmprobe.specs.embedding_files import read_image_folder
folder = Path(FOLDER)
for i, colour in enumerate([(200, 0, 0), (0, 200, 0)]):
    Image.new("RGB", (32, 32), colour).save(folder / f"{i}.png")
source = read_image_folder("A", folder)
Image.new("RGB", (32, 32), (255, 255, 255)).save(folder / "1.png")
measurer = load_measurer(resolve_measurer("tiny"))
try:
    embed_image_folder(measurer, source)
    outcome = "stored new content under the old key"
except BadInputError:
    outcome = "refused"
stored = embedding_store(measurer.identity).get_many([user_image_key(d) for _, d in source.files])
print(outcome if outcome == "refused" and stored[1] is None else "stored new content under the old key")
"""


#: ``ldmprobe`` with the third generation call failing as CUDA does when it runs out of memory
#: (arguments: the sweep command's, after ``-c CODE``).
OOM_TRIAL = """
import sys
from ldmprobe.engine import generate
from ldmprobe.cli.main import run
real, calls = generate.BatchGenerator._run, []
def run_then_oom(self, items):
    calls.append(1)
    if len(calls) == 3:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
    return real(self, items)
generate.BatchGenerator._run = run_then_oom
sys.exit(run(sys.argv[1:]))
"""


def png_bytes(cache: Path) -> dict:
    """Every cached image's bytes by key."""
    return {p.stem: p.read_bytes() for p in (cache / "images").rglob("*.png") if p.parent.name != "index"}


#: ``ldmprobe`` killed (SIGKILL) at one moment of publishing its run folder (argument 1: where;
#: the rest: the sweep command's): ``report`` while report.html is written (inside the staging
#: folder), ``replace`` between the two renames of a ``--replace`` without RENAME_EXCHANGE.
KILLED_PUBLISHING = """
import os, signal, sys
from ldmprobe.cli.main import run
from ldmprobe.render import report
from ldmprobe.results import run_folder_place as place

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[1] == "report":
    report.render_report = die
else:
    real_exchange, real_rename = place.exchange, os.rename

    def exchange(staging, out):
        place._renameat2 = lambda *a: False  # the two-step exchange, as where the OS lacks renameat2
        def first_then_die(a, b):
            real_rename(a, b)
            die()
        os.rename = first_then_die
        real_exchange(staging, out)

    place.exchange = exchange
sys.exit(run(sys.argv[2:]))
"""


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []
