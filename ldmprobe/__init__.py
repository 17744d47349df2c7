"""ldmprobe: measure how words move text-to-image diffusion models, in CLIP space.

Importing the package is cheap: torch, diffusers and open_clip load only when a model does.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ldmprobe")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

SCHEMA_VERSION = "1.0"
