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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldmprobe.store.files import models_dir
from ldmprobe.models import presets as _presets
from ldmprobe.models import tiny, tiny_arch
from ldmprobe.models.configs import architecture, guidance_semantics, native_image_size, scheduler_identity  # noqa: F401
from ldmprobe.models.hub import hub_reachable, offline_requested, set_hub_offline, unavailable_message  # noqa: F401
from ldmprobe.models.libraries import quiet_libraries
from ldmprobe.models.reference import is_reference_folder, reference_folder
from ldmprobe.errors import ModelUnavailableError, UnknownModelError

DEFAULT_GENERATOR = "sd15"
DEFAULT_MEASURER = "ViT-L-14-quickgelu:openai"

#: Generator presets: name -> hub id (or the built-in tiny model).
GENERATOR_PRESETS: dict[str, dict[str, str]] = {
    "sd15": {
        "hub_id": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "about": "Stable Diffusion 1.5 (512x512), conditioned on CLIP ViT-L/14 text states",
    },
    "tiny": {"hub_id": "", "about": "built-in random-weight SD pipeline for tests and smoke runs"},
    "reference": {"hub_id": "", "about": "shipped reference world: a small trained model with planted biases"},
}

GENERATOR_PRESETS.update({**_presets.TINY_GENERATORS, **_presets.REAL_GENERATORS})

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
    "reference": {"hf_hub": "", "about": "shipped reference world's CLIP (its generator conditions on its text tower)"},
}
MEASURER_PRESETS.update({**_presets.TINY_MEASURERS, **_presets.REAL_MEASURERS})

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
TINY_WARNING = "tiny models have random weights: their numbers mean nothing"


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

    @property
    def is_reference(self) -> bool:
        """The shipped reference world (or a copy): its numbers are true of that world only."""
        return self.source == "local" and is_reference_folder(Path(self.location))


def resolve_generator(spec: str, revision: str | None = None) -> GeneratorRef:
    """Turn a preset name, hub id (``org/name``) or local folder into a GeneratorRef."""
    text = (spec or "").strip()
    if not text:
        raise UnknownModelError("The pipeline name is empty. Use a preset (sd15, tiny), a hub id, or a folder.")
    if text in GENERATOR_PRESETS:
        preset = GENERATOR_PRESETS[text]
        if text == "tiny" or text in tiny_arch.GENERATORS:
            return GeneratorRef(spec=text, source="tiny", location="")
        if text == "reference":
            return GeneratorRef(spec=text, source="local", location=str(reference_folder("generator")))
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
        if ref.spec in tiny_arch.GENERATORS:
            return tiny_arch.ensure_generator(models_dir(), ref.spec)
        return tiny.ensure_tiny_generator(models_dir())
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


_FINGERPRINTS: dict[tuple, str] = {}


def folder_fingerprint(folder: Path) -> str:
    """sha256 over a model folder's config files and weight files, each whole.

    A weight file's sha256 is computed once and remembered by its path, size, mtime and inode
    (``models.weights_hash``), so a multi-GB checkpoint is hashed once, not per run.
    Computed once per process for each state of the folder (its files' paths, sizes,
    modification times and inodes), so the measurer's identity costs one directory walk.
    """
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    state = (str(Path(folder).resolve()),) + tuple(
        (p.as_posix(), st.st_size, st.st_mtime_ns, st.st_ino) for p in files for st in [p.stat()])
    if state not in _FINGERPRINTS:
        _FINGERPRINTS[state] = _fingerprint(folder, files)
    return _FINGERPRINTS[state]


def _fingerprint(folder: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    weight_suffixes = {".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx"}
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        digest.update(rel.encode() + b"\0")
        if path.suffix in weight_suffixes:
            from ldmprobe.models.weights_hash import file_digest

            digest.update(f"{path.stat().st_size}:{file_digest(path)}".encode())  # every byte, hashed once
        elif path.suffix in {".json", ".txt", ".model", ".yaml"}:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def generator_identity(ref: GeneratorRef, folder: Path, described=None, memory: tuple[str, ...] | None = None
                       ) -> dict[str, Any]:
    """What identifies the generator's weights in a cache key: hub id + commit, or a fingerprint
    (``described``: ``configs.describe``, ``memory``: ``runtime.memory_options``, when read)."""
    index = json.loads((folder / "model_index.json").read_text())
    identity: dict[str, Any] = {"class": index.get("_class_name", "")}
    if ref.source == "hub":
        # snapshot folders are named by the resolved commit hash
        identity.update(source="hub", id=ref.location, revision=folder.name)
    else:
        identity.update(source=ref.source, fingerprint=folder_fingerprint(folder))
    family = architecture(folder) if described is None else described.architecture
    if family != "sd1":  # SD 1.x identities (and so their cache keys) stay as they were
        kind = guidance_semantics(folder)["kind"] if described is None else described.guidance["kind"]
        identity.update(architecture=family, guidance=kind)
    if memory is None:
        from ldmprobe.models.runtime import memory_options
        memory = memory_options()
    if memory:  # LDMPROBE_MEMORY: recorded with the run and in every key (tiling changes pixels)
        identity["memory"] = list(memory)
    return identity


def locate_pair(pipeline: str, revision: str | None, measurer: str, *, offline: bool, tolerate: bool = False):
    """Both models resolved and made sure of, unloaded: ``(generator_ref, measurer_ref, generator
    folder (configs only), measurer folder (tiny, local), why each could not be had)``; ``tolerate``:
    a model that cannot be had is no error (why: its message's first sentence; no folders)."""
    generator_ref, measurer_ref = resolve_generator(pipeline, revision), resolve_measurer(measurer)
    missing: list[str | None] = [None, None]
    try:
        folder = locate_generator(generator_ref, offline=offline, configs_only=True)
    except ModelUnavailableError as exc:
        if not tolerate:
            raise
        folder, missing[0] = None, str(exc).split(". Ways forward")[0].rstrip(".")
    try:
        ensure_measurer_available(measurer_ref, offline=offline)
    except ModelUnavailableError as exc:
        if not tolerate:
            raise
        missing[1] = str(exc).split(". Ways forward")[0].rstrip(".")
    measurer_folder = None if folder is None or measurer_ref.source not in {"tiny", "local-dir"} else (
        tiny_measurer_folder(measurer_ref) if measurer_ref.source == "tiny" else Path(measurer_ref.name))
    return generator_ref, measurer_ref, folder, measurer_folder, missing


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

    @property
    def is_reference(self) -> bool:
        """The shipped reference world's measurer (or a copy)."""
        return self.source == "local-dir" and is_reference_folder(Path(self.name))


def resolve_measurer(spec: str) -> MeasurerRef:
    """Parse ``NAME:PRETRAINED``, ``hf-hub:ORG/REPO``, ``local-dir:PATH`` or ``tiny``."""
    text = (spec or "").strip()
    if text == "tiny" or text in tiny_arch.MEASURERS:
        return MeasurerRef(spec=text, source="tiny", name=text)
    if text == "reference":
        return MeasurerRef(spec=text, source="local-dir", name=str(reference_folder("measurer")))
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
        "hf-hub:ORG/REPO, local-dir:PATH, reference, or tiny."
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


def measurer_identity(ref: MeasurerRef) -> dict[str, Any]:
    """What identifies a measurer in an embedding cache key."""
    if ref.source == "tiny":
        return {"source": "tiny", "fingerprint": folder_fingerprint(tiny_measurer_folder(ref))}
    if ref.source == "local-dir":
        return {"source": "local-dir", "fingerprint": folder_fingerprint(Path(ref.name))}
    if ref.source == "hf-hub":
        return {"source": "hf-hub", "id": ref.name}
    return {"source": "open_clip", "model": ref.name, "pretrained": ref.pretrained}


def tiny_measurer_folder(ref: MeasurerRef) -> Path:
    """The built folder of a tiny measurer (``tiny`` CLIP or ``tiny-siglip``), built on first use."""
    if ref.name in tiny_arch.MEASURERS:
        return tiny_arch.ensure_measurer(models_dir(), ref.name)
    return tiny.ensure_tiny_measurer(models_dir())


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
