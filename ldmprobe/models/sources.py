"""Model presets, and resolving + loading generators (diffusers) and measurers (open_clip).

Resolution (``resolve_*``, ``locate_*``, ``*_identity``) reads only names and files, so a dry
run can key its work without importing torch. Loading (``load_*``) imports torch, diffusers
and open_clip on first use.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import socket
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ldmprobe.engine import cache
from ldmprobe.models import tiny
from ldmprobe.errors import BadInputError, ModelUnavailableError, UnknownModelError

DEFAULT_GENERATOR = "sd15"
DEFAULT_MEASURER = "ViT-L-14-quickgelu:openai"

#: Generator presets: name -> hub id (or the built-in tiny model).
GENERATOR_PRESETS: dict[str, dict[str, str]] = {
    "sd15": {
        "hub_id": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "about": "Stable Diffusion 1.5 (512x512), conditioned on CLIP ViT-L/14 text states",
    },
    "tiny": {"hub_id": "", "about": "built-in random-weight SD pipeline for tests and smoke runs"},
}

#: Hub ids that are gone, with the id that replaced them.
MOVED_HUB_IDS = {
    "runwayml/stable-diffusion-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
}

#: Measurer presets shown by ``ldmprobe models`` (any open_clip model is accepted).
MEASURER_PRESETS: dict[str, dict[str, str]] = {
    "ViT-L-14-quickgelu:openai": {
        "hf_hub": "timm/vit_large_patch14_clip_224.openai",
        "about": "OpenAI CLIP ViT-L/14, the text tower SD 1.5 conditions on",
    },
    "tiny": {"hf_hub": "", "about": "built-in random-weight open_clip CLIP for tests and smoke runs"},
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_TINY_WARNING = "tiny models have random weights: their numbers mean nothing"


# --------------------------------------------------------------------------- offline


def offline_requested(flag: bool = False) -> bool:
    """True when the user asked never to touch the network."""
    env = os.environ.get("LDMPROBE_OFFLINE", "") or os.environ.get("HF_HUB_OFFLINE", "")
    return flag or env.strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint, so an unreachable hub fails in seconds."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urllib.parse.urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def set_hub_offline() -> None:
    """Make huggingface_hub answer from its cache only (no retries against the network)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # already imported: the env var alone is not re-read
        constants.HF_HUB_OFFLINE = True


def unavailable_message(what: str, tried: str, reason: str) -> str:
    return (
        f"Could not load {what}: {tried} {reason}. Ways forward: (1) run once with network "
        "access so the weights are cached (or warm the Hugging Face cache on another machine "
        "and copy it, HF_HOME); (2) point at a local folder that holds the model; or "
        "(3) use the built-in 'tiny' models (--pipeline tiny --measurer tiny) for a smoke run "
        "whose numbers mean nothing."
    )


# --------------------------------------------------------------------------- generators


@dataclass(frozen=True)
class GeneratorRef:
    """A resolved generator spec: where its weights come from, before anything is loaded."""

    spec: str
    source: str  # "tiny" | "hub" | "local"
    location: str  # hub id or local folder path ("" for tiny before it is built)
    revision: str | None = None

    @property
    def is_tiny(self) -> bool:
        """Built-in tiny, or a local folder holding a copy of one (its outputs mean nothing)."""
        return self.source == "tiny" or (self.source == "local" and tiny.is_tiny_folder(Path(self.location)))


def resolve_generator(spec: str, revision: str | None = None) -> GeneratorRef:
    """Turn a preset name, hub id (``org/name``) or local folder into a GeneratorRef."""
    text = (spec or "").strip()
    if not text:
        raise UnknownModelError("The pipeline name is empty. Use a preset (sd15, tiny), a hub id, or a folder.")
    if text in GENERATOR_PRESETS:
        preset = GENERATOR_PRESETS[text]
        if text == "tiny":
            return GeneratorRef(spec=text, source="tiny", location="")
        return GeneratorRef(spec=text, source="hub", location=preset["hub_id"], revision=revision)
    if text in MOVED_HUB_IDS:
        raise UnknownModelError(
            f"The hub id '{text}' no longer exists on the Hugging Face hub. Use "
            f"'{MOVED_HUB_IDS[text]}' (or the preset 'sd15') instead."
        )
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise UnknownModelError(
                f"'{text}' is a local path but not a diffusers pipeline folder (no model_index.json). "
                "Point --pipeline at a folder written by DiffusionPipeline.save_pretrained."
            )
        return GeneratorRef(spec=text, source="local", location=str(path.resolve()))
    if _HUB_ID.match(text):
        return GeneratorRef(spec=text, source="hub", location=text, revision=revision)
    close = difflib.get_close_matches(text, list(GENERATOR_PRESETS), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UnknownModelError(
        f"Unknown pipeline '{text}': not a preset ({', '.join(GENERATOR_PRESETS)}), not an existing "
        f"folder, and not a hub id of the form org/name.{hint}"
    )


def hub_snapshot(repo_id: str, revision: str | None, *, offline: bool, allow_patterns=None,
                 pipeline_files: bool = False) -> Path | None:
    """The local snapshot folder of a hub repo (downloading if allowed), or None if not cached.

    ``pipeline_files`` fetches what a diffusers pipeline needs (diffusers picks the component
    weights, preferring safetensors, instead of every checkpoint in the repo); otherwise the
    files matching ``allow_patterns``.
    """
    if offline:
        set_hub_offline()
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    try:
        if pipeline_files:
            quiet_libraries()
            from diffusers import DiffusionPipeline

            return Path(DiffusionPipeline.download(repo_id, revision=revision, local_files_only=offline))
        return Path(
            snapshot_download(
                repo_id, revision=revision, local_files_only=offline, allow_patterns=allow_patterns
            )
        )
    except LocalEntryNotFoundError:
        return None
    except Exception as exc:  # RepositoryNotFound, gated, HTTP errors, diffusers' EnvironmentError
        name = type(exc).__name__
        if name in {"RepositoryNotFoundError", "RevisionNotFoundError"}:
            raise UnknownModelError(f"The hub has no model '{repo_id}' (revision {revision or 'main'}): {name}.") from exc
        if offline or "offline" in name.lower() or "connect" in str(exc).lower():
            return None
        raise


def _resolve_offline(offline: bool) -> bool:
    """Decide whether hub access is off: asked for, or the hub cannot be reached at all."""
    if offline_requested(offline):
        return True
    return not hub_reachable()


_CONFIG_PATTERNS = ["*.json", "*.txt", "tokenizer/*", "scheduler/*"]


def locate_generator(ref: GeneratorRef, *, offline: bool = False, configs_only: bool = False) -> Path:
    """The local folder holding the generator (built or fetched as needed)."""
    if ref.source == "tiny":
        return tiny.ensure_tiny_generator(cache.models_dir())
    if ref.source == "local":
        return Path(ref.location)
    is_offline = _resolve_offline(offline)
    folder = hub_snapshot(ref.location, ref.revision, offline=is_offline, allow_patterns=_CONFIG_PATTERNS,
                          pipeline_files=not configs_only)
    if folder is None or not (folder / "model_index.json").is_file():
        raise ModelUnavailableError(
            unavailable_message(
                f"pipeline '{ref.spec}'",
                f"tried the Hugging Face hub repo '{ref.location}'"
                + (f" at revision {ref.revision}" if ref.revision else ""),
                "but it is not in the local Hugging Face cache and the hub "
                + ("was not contacted (offline mode)" if offline_requested(offline) else "could not be reached"),
            )
        )
    return folder


def folder_fingerprint(folder: Path) -> str:
    """sha256 over a model folder's config files (whole) and weight files (size + head/tail).

    Hashing multi-GB weights in full would take seconds per run; size plus the first and last
    MiB of each weight file changes whenever a fine-tune changes the weights in practice.
    """
    digest = hashlib.sha256()
    weight_suffixes = {".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx"}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        digest.update(rel.encode() + b"\0")
        if path.suffix in weight_suffixes:
            size = path.stat().st_size
            digest.update(str(size).encode())
            with path.open("rb") as fh:
                digest.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), os.SEEK_END)
                    digest.update(fh.read())
        elif path.suffix in {".json", ".txt", ".model", ".yaml"}:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def generator_identity(ref: GeneratorRef, folder: Path) -> dict[str, Any]:
    """What identifies the generator's weights in a cache key: hub id + commit, or a fingerprint."""
    index = json.loads((folder / "model_index.json").read_text())
    identity: dict[str, Any] = {"class": index.get("_class_name", "")}
    if ref.source == "hub":
        # snapshot folders are named by the resolved commit hash
        identity.update(source="hub", id=ref.location, revision=folder.name)
    else:
        identity.update(source=ref.source, fingerprint=folder_fingerprint(folder))
    return identity


def scheduler_identity(folder: Path) -> dict[str, Any]:
    """Scheduler class and public config, read from the folder (no torch needed)."""
    index = json.loads((folder / "model_index.json").read_text())
    entry = index.get("scheduler") or [None, None]
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    public = {k: v for k, v in sorted(config.items()) if not k.startswith("_")}
    return {"class": entry[1] or config.get("_class_name", ""), "config": public}


@dataclass
class LoadedGenerator:
    ref: GeneratorRef
    folder: Path
    pipe: Any
    device: str
    dtype: str
    identity: dict[str, Any]
    safety_checker: Any = None  # detached, so it flags images without blacking them out

    @property
    def tokenizer(self):
        return self.pipe.tokenizer


def torch_dtype(name: str):
    import torch

    return {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def load_generator(
    ref: GeneratorRef, *, device: str = "cpu", dtype: str = "float32", offline: bool = False
) -> LoadedGenerator:
    """Load a diffusers text-to-image pipeline from its resolved folder."""
    folder = locate_generator(ref, offline=offline)
    quiet_libraries()
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    try:
        pipe = DiffusionPipeline.from_pretrained(
            str(folder), torch_dtype=torch_dtype(dtype), local_files_only=True
        )
    except (OSError, ValueError) as exc:  # e.g. configs cached by a dry run, weights not
        raise ModelUnavailableError(
            unavailable_message(f"pipeline '{ref.spec}'", f"found its folder '{folder}'",
                                f"but loading it failed ({' '.join(str(exc).split())[:300]})")
        ) from exc
    checker = getattr(pipe, "safety_checker", None)
    if checker is not None:
        pipe.safety_checker = None
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    if checker is not None:
        checker.to(device)
    return LoadedGenerator(
        ref=ref,
        folder=folder,
        pipe=pipe,
        device=device,
        dtype=dtype,
        identity=generator_identity(ref, folder),
        safety_checker=checker,
    )


class TokenCounter:
    """Counts the generator tokenizer's tokens (start/end included), cached per tokenizer.

    The tokenizer loads only when a prompt's count is not cached yet, so a rerun's
    prompt-length check costs no transformers import.
    """

    def __init__(self, ref: GeneratorRef, folder: Path, *, offline: bool = False):
        self.ref, self.folder, self.offline = ref, folder, offline
        tok_dir = folder / "tokenizer"
        fingerprint = folder_fingerprint(tok_dir) if tok_dir.is_dir() else "none"
        self.path = cache.cache_root() / "token_counts" / f"{fingerprint[:24]}.json"
        try:
            self.counts: dict[str, int] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.counts = {}
        self._tokenizer = None
        self._dirty = False

    @property
    def max_length(self) -> int:
        config = self.folder / "tokenizer" / "tokenizer_config.json"
        try:
            limit = int(json.loads(config.read_text()).get("model_max_length", 77))
        except (OSError, ValueError, TypeError):
            limit = 77
        return 77 if limit > 10_000 else limit

    def __call__(self, text: str) -> int:
        if text not in self.counts:
            if self._tokenizer is None:
                self._tokenizer = load_generator_tokenizer(self.ref, offline=self.offline)
            self.counts[text] = len(self._tokenizer(text, truncation=False).input_ids)
            self._dirty = True
        return self.counts[text]

    def save(self) -> None:
        if self._dirty:
            cache.atomic_write_text(self.path, json.dumps(self.counts, ensure_ascii=False))
            self._dirty = False


def load_generator_tokenizer(ref: GeneratorRef, *, offline: bool = False):
    """Only the generator's tokenizer (for prompt-length checks without loading weights)."""
    folder = locate_generator(ref, offline=offline, configs_only=True)
    quiet_libraries()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)


# --------------------------------------------------------------------------- measurers


@dataclass(frozen=True)
class MeasurerRef:
    spec: str
    source: str  # "tiny" | "pretrained" | "hf-hub" | "local-dir"
    name: str  # open_clip model name, hub repo, or folder
    pretrained: str | None = None

    @property
    def is_tiny(self) -> bool:
        """Built-in tiny, or a local folder holding a copy of one (its outputs mean nothing)."""
        return self.source == "tiny" or (self.source == "local-dir" and tiny.is_tiny_folder(Path(self.name)))


def resolve_measurer(spec: str) -> MeasurerRef:
    """Parse ``NAME:PRETRAINED``, ``hf-hub:ORG/REPO``, ``local-dir:PATH`` or ``tiny``."""
    text = (spec or "").strip()
    if text == "tiny":
        return MeasurerRef(spec=text, source="tiny", name="tiny")
    if text.startswith("hf-hub:"):
        repo = text[len("hf-hub:") :]
        if not _HUB_ID.match(repo):
            raise UnknownModelError(f"Measurer '{text}': expected hf-hub:ORG/REPO.")
        return MeasurerRef(spec=text, source="hf-hub", name=repo)
    if text.startswith("local-dir:"):
        path = Path(text[len("local-dir:") :]).expanduser()
        if not (path / "open_clip_config.json").is_file():
            raise UnknownModelError(
                f"Measurer '{text}': '{path}' is not an open_clip model folder "
                "(it needs open_clip_config.json and the weights file beside it)."
            )
        return MeasurerRef(spec=text, source="local-dir", name=str(path.resolve()))
    if text.count(":") == 1 and all(text.split(":")):
        name, pretrained = text.split(":")
        return MeasurerRef(spec=text, source="pretrained", name=name, pretrained=pretrained)
    raise UnknownModelError(
        f"Unknown measurer '{text}'. Use NAME:PRETRAINED (e.g. {DEFAULT_MEASURER}), "
        "hf-hub:ORG/REPO, local-dir:PATH, or tiny."
    )


def _check_open_clip_name(ref: MeasurerRef) -> dict[str, Any]:
    """Validate NAME:PRETRAINED against open_clip's registry; return the pretrained config."""
    import open_clip

    models = open_clip.list_models()
    if ref.name not in models:
        close = difflib.get_close_matches(ref.name, models, n=3)
        raise UnknownModelError(
            f"open_clip has no model '{ref.name}'."
            + (f" Close names: {', '.join(close)}." if close else "")
            + " `python -c \"import open_clip; print(open_clip.list_models())\"` lists them all."
        )
    tags = open_clip.list_pretrained_tags_by_model(ref.name)
    if ref.pretrained not in tags:
        raise UnknownModelError(
            f"open_clip model '{ref.name}' has no pretrained weights '{ref.pretrained}'. "
            f"Known: {', '.join(tags) or 'none'}."
        )
    return open_clip.get_pretrained_cfg(ref.name, ref.pretrained)


def measurer_cached(ref: MeasurerRef, pretrained_cfg: dict | None = None) -> bool | None:
    """Whether the measurer's weights are on disk (None when it cannot be told)."""
    if ref.source in {"tiny", "local-dir"}:
        return True
    if ref.source == "hf-hub":
        repo = ref.name
    else:
        cfg = pretrained_cfg or {}
        repo = (cfg.get("hf_hub") or MEASURER_PRESETS.get(ref.spec, {}).get("hf_hub") or "").strip("/")
        if not repo:
            return None
    from huggingface_hub import try_to_load_from_cache

    names = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


@dataclass
class LoadedMeasurer:
    ref: MeasurerRef
    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[-1]) if hasattr(self.model, "text_projection") else -1


def measurer_identity(ref: MeasurerRef) -> dict[str, Any]:
    """What identifies a measurer in an embedding cache key."""
    if ref.source == "tiny":
        folder = tiny.ensure_tiny_measurer(cache.models_dir())
        return {"source": "tiny", "fingerprint": folder_fingerprint(folder)}
    if ref.source == "local-dir":
        return {"source": "local-dir", "fingerprint": folder_fingerprint(Path(ref.name))}
    if ref.source == "hf-hub":
        return {"source": "hf-hub", "id": ref.name}
    return {"source": "open_clip", "model": ref.name, "pretrained": ref.pretrained}


def ensure_measurer_available(ref: MeasurerRef, *, offline: bool = False) -> None:
    """Fail fast (before any generation) when the measurer's weights cannot be had.

    Presets are checked without importing open_clip; other NAME:PRETRAINED names are
    validated against open_clip's registry (which imports torch).
    """
    if ref.source not in {"hf-hub", "pretrained"}:
        return
    is_offline = _resolve_offline(offline)
    if is_offline:
        set_hub_offline()
    cfg = None
    if ref.source == "pretrained" and (ref.spec not in MEASURER_PRESETS or not is_offline):
        cfg = _check_open_clip_name(ref)
    if is_offline and not measurer_cached(ref, cfg):
        raise ModelUnavailableError(
            unavailable_message(
                f"measurer '{ref.spec}'",
                f"tried open_clip weights '{ref.spec}'",
                "but they are not in the local cache and the hub "
                + ("was not contacted (offline mode)" if offline_requested(offline) else "could not be reached"),
            )
        )


def load_measurer(ref: MeasurerRef, *, device: str = "cpu", offline: bool = False) -> LoadedMeasurer:
    """Load an open_clip model, its preprocess transform and tokenizer."""
    if ref.source == "tiny":
        model_name = "local-dir:" + str(tiny.ensure_tiny_measurer(cache.models_dir()))
        pretrained = None
    elif ref.source == "local-dir":
        model_name, pretrained = "local-dir:" + ref.name, None
    elif ref.source == "hf-hub":
        model_name, pretrained = "hf-hub:" + ref.name, None
    else:
        model_name, pretrained = ref.name, ref.pretrained

    ensure_measurer_available(ref, offline=offline)
    quiet_libraries()
    import open_clip

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
        tokenizer = open_clip.get_tokenizer(model_name)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelUnavailableError(
            unavailable_message(f"measurer '{ref.spec}'", "tried open_clip", f"and it failed ({exc})")
        ) from exc
    model.eval()
    return LoadedMeasurer(
        ref=ref, model=model, preprocess=preprocess, tokenizer=tokenizer, device=device,
        identity=measurer_identity(ref),
    )


# --------------------------------------------------------------------------- devices


def _surely_cpu_only() -> bool:
    """True on Linux with no NVIDIA or ROCm device nodes: no GPU torch could use (no import)."""
    if not sys.platform.startswith("linux"):
        return False
    return not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg"))


def pick_device(requested: str = "auto") -> tuple[str, str]:
    """(device, dtype) for ``--device``: auto = CUDA (float16), then MPS, then CPU (float32)."""
    if requested in ("auto", "cpu") and (requested == "cpu" or _surely_cpu_only()):
        return "cpu", "float32"
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda", "float16"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps", "float32"
        return "cpu", "float32"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"--device {requested}: CUDA is not available on this machine (try --device cpu).")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BadInputError("--device mps: MPS is not available on this machine (try --device cpu).")
    return requested, ("float16" if requested.startswith("cuda") else "float32")


def quiet_libraries() -> None:
    """Keep diffusers/transformers chatter (progress bars, deprecations) off stdout."""
    import logging
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("diffusers", "transformers", "open_clip", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


TINY_WARNING = _TINY_WARNING
