"""Built-in ``tiny`` models: real architectures with small random weights, made offline.

They are built once from configs with a fixed seed, saved into the cache as ordinary model
folders, and loaded back through the same code path as real models. Their numbers mean
nothing; they exist for tests, CI and smoke runs.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from ldmprobe.specs.clip_bpe import N_MERGES as _N_MERGES  # lines 1..N of the BPE file (line 0: header)
from ldmprobe.store.files import publish_dir, staging_dir

TINY_VERSION = 1
TINY_SEED = 0

#: open_clip CLIP config of the tiny measurer (ViT + text transformer, CLIP's real vocabulary).
TINY_MEASURER_CONFIG = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}



def clip_bpe_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's BPE vocabulary (49408 entries) and merges, rebuilt from open_clip's bundled file."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _N_MERGES + 1]]
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def build_clip_tokenizer():
    """A transformers CLIPTokenizer equivalent to open_clip's (bar ftfy/HTML clean-up)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe_vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _seeded(seed: int = TINY_SEED):
    import torch

    rng = torch.random.fork_rng(devices=[])
    rng.__enter__()
    torch.manual_seed(seed)
    return rng


def build_tiny_generator(folder: Path) -> None:
    """Write a tiny StableDiffusionPipeline (64x64 images) into ``folder``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    rng = _seeded()
    try:
        unet = UNet2DConditionModel(
            sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), norm_num_groups=32, cross_attention_dim=32,
            attention_head_dim=(2, 4),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        )
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[32, 64],
            norm_num_groups=32, sample_size=64,
            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408, max_position_embeddings=77, hidden_size=32, intermediate_size=37,
                num_attention_heads=4, num_hidden_layers=2, projection_dim=32, layer_norm_eps=1e-5,
                bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
            )
        )
    finally:
        rng.__exit__(None, None, None)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=build_clip_tokenizer(), unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    _write_marker(folder, "generator")


def build_tiny_measurer(folder: Path, seed: int = TINY_SEED) -> None:
    """Write a tiny open_clip CLIP as ``open_clip_config.json`` + safetensors into ``folder``.

    Another ``seed`` gives a second, different random measurer (to compare measurers offline).
    """
    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = _seeded(seed)
    try:
        model = open_clip.CLIP(**TINY_MEASURER_CONFIG)
    finally:
        rng.__exit__(None, None, None)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    config = {
        "model_cfg": TINY_MEASURER_CONFIG,
        "preprocess_cfg": {
            "mean": list(open_clip.OPENAI_DATASET_MEAN),
            "std": list(open_clip.OPENAI_DATASET_STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    _write_marker(folder, "measurer", seed)


MARKER = "ldmprobe_tiny.json"
#: Every file's size, written last; hidden so that the folder's fingerprint (and so every cache
#: key made with the model) is the same for a rebuilt folder as for the first build.
SIZES = ".ldmprobe-sizes.json"


def _write_marker(folder: Path, role: str, seed: int = TINY_SEED, **extra) -> None:
    marker = {"ldmprobe_tiny": TINY_VERSION, "role": role, "seed": seed,
              "note": "random weights: outputs made with this model mean nothing", **extra}
    (folder / MARKER).write_text(json.dumps(marker, indent=2))
    sizes = {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / SIZES).write_text(json.dumps(sizes, indent=1))
    digests = {rel: _sha256(folder / rel) for rel in sizes}  # configs and tokenizer too (issue 28)
    (folder / DIGESTS).write_text(json.dumps(digests, indent=1))


#: Every weight file's sha256 (hidden, like SIZES): a byte changed inside the weights keeps the
#: size and a readable header, and only this finds it. Checked through the remembered hashes of
#: ``weights_hash`` (hashed again only when a file's size, mtime or inode changed).
DIGESTS = ".ldmprobe-sha256.json"


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _digest_damage(folder: Path) -> str | None:
    from ldmprobe.models.weights_hash import file_digest

    try:
        digests = json.loads((folder / DIGESTS).read_text())
    except FileNotFoundError:
        return None  # built before digests were listed: sizes and headers are what can be checked
    except (OSError, ValueError):
        return f"{DIGESTS} is unreadable"
    if not isinstance(digests, dict):
        return f"{DIGESTS} is unreadable"
    for rel, expected in digests.items():
        if not (folder / rel).is_file():
            return f"{rel} is missing"
        if file_digest(folder / rel) != expected:
            return f"{rel} does not match its sha256 (changed or damaged)"
    _list_unhashed(folder, digests)
    return None


def _list_unhashed(folder: Path, digests: dict) -> None:
    """A folder built when only weights were hashed: its config, scheduler and tokenizer files are
    hashed now and listed, so an edit from here on is found (issue 28)."""
    try:
        listed = json.loads((folder / SIZES).read_text())
    except (OSError, ValueError):
        return
    missing = [rel for rel in listed if rel not in digests and (folder / rel).is_file()]
    if missing:
        from ldmprobe.store.files import atomic_write_text

        digests = {**digests, **{rel: _sha256(folder / rel) for rel in missing}}
        try:
            atomic_write_text(folder / DIGESTS, json.dumps(digests, indent=1))
        except OSError:
            pass  # a read-only cache: checked as far as it was listed


def _safetensors_damage(path: Path) -> str | None:
    """Why a safetensors file is not whole (its header names where the last tensor ends)."""
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
            size = os.fstat(fh.fileno()).st_size
    except (OSError, ValueError):
        return f"{path.name} has no readable header"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if size != 8 + n + max(ends, default=0):
        return f"{path.name} has {size} bytes, not {8 + n + max(ends, default=0)} (truncated or damaged)"
    return None


def damage(folder: Path, probe_file: str) -> str | None:
    """Why a built tiny model folder cannot be used, or None; reads no weights (no torch)."""
    if not (folder / probe_file).is_file():
        return f"{probe_file} is missing"
    try:
        json.loads((folder / MARKER).read_text())
        listed = json.loads((folder / SIZES).read_text()) if (folder / SIZES).is_file() else {}
    except (OSError, ValueError):
        return f"{MARKER} or {SIZES} is unreadable"
    for rel, size in dict(listed).items():
        actual = (folder / rel).stat().st_size if (folder / rel).is_file() else None
        if actual != size:
            return f"{rel} is missing" if actual is None else f"{rel} has {actual} bytes, not {size}"
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".safetensors" and (reason := _safetensors_damage(path)):
            return reason
        if path.suffix == ".json" and not listed:  # folders built before sizes were listed
            try:
                json.loads(path.read_text())
            except (OSError, ValueError):
                return f"{path.relative_to(folder)} is not readable JSON"
    return _digest_damage(folder)


def _set_aside(final: Path, reason: str) -> None:
    """Move a damaged tiny model folder out of the way (then remove it) so it is built again."""
    import shutil

    from ldmprobe.errors import ModelUnavailableError
    from ldmprobe.store.files import cache_hint
    from ldmprobe.store import run_state

    aside = final.parent / f".{final.name}.{os.getpid()}-damaged"
    try:
        os.replace(final, aside)
    except FileNotFoundError:
        return  # another process set it aside first
    except OSError as exc:
        raise ModelUnavailableError(
            f"The cached tiny model at {final} is damaged ({reason}) and cannot be moved away to rebuild it: "
            f"{exc.strerror or exc}. Delete that folder and rerun." + cache_hint()) from None
    shutil.rmtree(aside, ignore_errors=True)
    run_state.current.record_repair("tiny models", reason, detail=f"The tiny model at {final} was damaged ({reason}) and was rebuilt")


def _ensure(models_dir: Path, name: str, builder, probe_file: str) -> Path:
    final = models_dir / f"{name}-v{TINY_VERSION}"
    if final.exists():
        reason = damage(final, probe_file)
        if reason is None:
            return final
        _set_aside(final, reason)
    from ldmprobe.store.diskspace import build_failure_message, check_model_build
    from ldmprobe.models.libraries import quiet_libraries

    check_model_build(models_dir, name)  # a disk too small: exit 2 with the figures, before building
    quiet_libraries()
    tmp = staging_dir(final)
    try:
        builder(tmp)
    except BaseException as exc:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        full = build_failure_message(models_dir, name) if isinstance(exc, Exception) else None
        if full is not None:  # the disk filled while building (safetensors says SafetensorError)
            from ldmprobe.errors import LdmprobeError

            raise LdmprobeError(full) from exc
        raise
    return publish_dir(tmp, final)


def ensure_tiny_generator(models_dir: Path) -> Path:
    """The tiny generator's folder, built on first use."""
    return _ensure(models_dir, "tiny-generator", build_tiny_generator, "model_index.json")


def ensure_tiny_measurer(models_dir: Path) -> Path:
    """The tiny measurer's folder, built on first use."""
    return _ensure(models_dir, "tiny-measurer", build_tiny_measurer, "open_clip_config.json")


def is_tiny_folder(folder: Path) -> bool:
    return (Path(folder) / "ldmprobe_tiny.json").is_file()
