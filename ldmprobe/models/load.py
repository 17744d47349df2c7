"""Load resolved models: a diffusers pipeline, its tokenizer, an open_clip measurer; pick the device.

Torch, diffusers and open_clip are imported inside the functions that need them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ldmprobe.digest import CACHE_KINDS, cache_key
from ldmprobe.errors import ModelUnavailableError
from ldmprobe.models import tiny
from ldmprobe.models.libraries import quiet_libraries, torch_dtype
from ldmprobe.models.runtime import _surely_cpu_only, check_device_name, pick_device  # noqa: F401 (their old home)
from ldmprobe.models.sources import (
    GeneratorRef, MeasurerRef, ensure_measurer_available, folder_fingerprint, generator_identity, locate_generator,
    measurer_identity, tiny_measurer_folder, unavailable_message,
)


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


def load_generator(
    ref: GeneratorRef, *, device: str = "cpu", dtype: str = "float32", offline: bool = False
) -> LoadedGenerator:
    """Load a diffusers text-to-image pipeline from its resolved folder."""
    from ldmprobe.models.runtime import adapt_call, apply_memory_options, memory_options

    memory = memory_options()  # a bad LDMPROBE_MEMORY exits 2 before anything loads
    folder = locate_generator(ref, offline=offline)
    from ldmprobe.models.reference import check_reference

    check_reference(folder)  # the shipped reference world: every file as it was exported
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
    pipe = adapt_call(pipe)  # a pipeline without negative_prompt / guidance_scale: left out of its call
    if not apply_memory_options(pipe, memory, device):
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


def load_generator_tokenizer(ref: GeneratorRef, *, offline: bool = False, component: str = "tokenizer"):
    """Only one of the generator's tokenizers (for prompt-length checks without loading weights)."""
    folder = locate_generator(ref, offline=offline, configs_only=True)
    quiet_libraries()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder / component), local_files_only=True)


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
        """The joint embedding's width: CLIP's text projection matrix, a custom text tower's
        projection (SigLIP: a Linear with bias), else the image tower's output width."""
        projection = getattr(self.model, "text_projection", None)
        if projection is None:
            projection = getattr(getattr(self.model, "text", None), "text_projection", None)
        if projection is not None and hasattr(projection, "out_features"):
            return int(projection.out_features)
        if projection is not None and hasattr(projection, "shape"):
            return int(projection.shape[-1])
        return int(getattr(getattr(self.model, "visual", None), "output_dim", -1))

    @property
    def loss(self) -> str:
        """"sigmoid" for SigLIP-family models (a learned logit bias), else "softmax" (CLIP)."""
        return "sigmoid" if getattr(self.model, "logit_bias", None) is not None else "softmax"

    def zero_shot(self, image_embeddings, text_embeddings):
        """Per-image label scores from unit image and text embeddings, as the model was trained.

        CLIP (softmax loss): softmax over the labels of ``exp(logit_scale) * cos``, rows sum to 1.
        SigLIP (sigmoid loss): ``sigmoid(exp(logit_scale) * cos + logit_bias)`` per label, each an
        independent probability that the pair matches (rows need not sum to 1). Returns numpy.
        """
        import numpy as np

        cos = np.asarray(image_embeddings, dtype=np.float64) @ np.asarray(text_embeddings, dtype=np.float64).T
        scale = float(self.model.logit_scale.detach().float().exp().cpu())
        logits = scale * cos
        if self.loss == "sigmoid":
            logits = logits + float(self.model.logit_bias.detach().float().cpu().reshape(-1)[0])
            return 1.0 / (1.0 + np.exp(-logits))
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)


def _open_clip_name(ref: MeasurerRef) -> tuple[str, str | None]:
    """open_clip's (model name, pretrained tag) for a resolved measurer."""
    if ref.source == "tiny":
        return "local-dir:" + str(tiny_measurer_folder(ref)), None
    if ref.source == "local-dir":
        from ldmprobe.models.reference import check_reference

        check_reference(Path(ref.name))
        return "local-dir:" + ref.name, None
    if ref.source == "hf-hub":
        return "hf-hub:" + ref.name, None
    return ref.name, ref.pretrained


def measurer_context_length(ref: MeasurerRef, folder: Path | None = None) -> int | None:
    """The text context length in a local measurer's open_clip config (tiny, local folder; its
    ``folder`` when known), read without importing open_clip; None when it is not known without loading."""
    if ref.source not in {"tiny", "local-dir"}:
        return None
    try:
        folder = folder or (tiny_measurer_folder(ref) if ref.source == "tiny" else Path(ref.name))
        config = json.loads((folder / "open_clip_config.json").read_text())
        return int(config["model_cfg"]["text_cfg"]["context_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class TextLimits:
    """What a plan's text checks need: each prompt's token count under the generator's CLIP
    tokenizer and (SD 3, Flux) its T5 one, their limits, and the measurer's context length."""

    clip_counts: dict[str, int]
    clip_limit: int
    t5_counts: dict[str, int] | None  # None: no T5
    t5_limit: int | None
    measurer_context: int | None


def text_limits(generator_ref: GeneratorRef, folder: Path, prompts, t5: tuple[str, int] | None,
                measurer_ref: MeasurerRef, measurer_folder: Path | None, *, offline: bool) -> TextLimits:
    """Count ``prompts`` with the generator's tokenizers (``t5``: ``configs.t5_tokenizer``) and
    read the measurer's context length."""
    clip = _count_tokens(generator_ref, folder, prompts, "tokenizer", None, offline)
    t5_counts, t5_limit = _count_tokens(generator_ref, folder, prompts, *t5, offline) if t5 else (None, None)
    return TextLimits(*clip, t5_counts, t5_limit, measurer_context_length(measurer_ref, measurer_folder))


def _count_tokens(ref: GeneratorRef, folder: Path, prompts, component: str, limit: int | None,
                  offline: bool) -> tuple[dict[str, int], int]:
    """Each prompt's token count (start and end included) under one of the generator's
    tokenizers, cached per tokenizer: it loads only when a count is not cached yet (a rerun's
    check imports no transformers); and the limit: ``limit``, else the tokenizer's
    ``model_max_length`` (77 when it states none)."""
    from ldmprobe.store.token_counts import cached_counts, write_counts

    tok_dir = folder / component
    fingerprint = folder_fingerprint(tok_dir) if tok_dir.is_dir() else "none"
    path, counts = cached_counts(cache_key("token-counts", CACHE_KINDS["token-counts"], {"tokenizer": fingerprint}))
    new = [prompt for prompt in dict.fromkeys(prompts) if prompt not in counts]
    try:
        tokenizer = load_generator_tokenizer(ref, offline=offline, component=component) if new else None
        for prompt in new:
            counts[prompt] = len(tokenizer(prompt, truncation=False).input_ids)
    finally:
        if new and new[0] in counts:  # something was counted
            write_counts(path, counts)
    if limit is None:
        try:
            limit = int(json.loads((tok_dir / "tokenizer_config.json").read_text()).get("model_max_length", 77))
        except (OSError, ValueError, TypeError):
            limit = 77
        limit = 77 if limit > 10_000 else limit
    return {prompt: counts[prompt] for prompt in prompts}, int(limit)


def load_measurer_tokenizer(ref: MeasurerRef, *, offline: bool = False):
    """Only the measurer's tokenizer (no weights): to check text lengths before any slow work."""
    model_name, _ = _open_clip_name(ref)
    ensure_measurer_available(ref, offline=offline)
    quiet_libraries()
    import open_clip

    try:
        return open_clip.get_tokenizer(model_name)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelUnavailableError(
            unavailable_message(f"measurer '{ref.spec}'", "tried open_clip's tokenizer", f"and it failed ({exc})")
        ) from exc


def load_measurer(ref: MeasurerRef, *, device: str = "cpu", offline: bool = False) -> LoadedMeasurer:
    """Load an open_clip model, its preprocess transform and tokenizer."""
    model_name, pretrained = _open_clip_name(ref)
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
