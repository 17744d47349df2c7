"""Train the reference world's measurer (CLIP) and generator (latent diffusion), resumably.

    python -m reference_world.train --work WORK_DIR [--unet-steps N] [--export]
    python -m reference_world.train --work WORK_DIR --continue-from WEIGHTS --unet-steps N

Stages run in order and each is skipped once done: data, measurer (contrastive CLIP in
open_clip format), autoencoder (AutoencoderKL 32x32 -> 16x16x4), latents, UNet (epsilon
prediction with classifier-free-guidance dropout, conditioned on the measurer's text tower
converted to a transformers CLIPTextModel), export (float16 safetensors folders). Every stage
checkpoints atomically every few minutes; rerunning the same command resumes. All randomness
is seeded per step, so a resumed run follows the same path as an uninterrupted one.

``--continue-from WEIGHTS`` trains the UNet of an exported world (``WEIGHTS/generator``) for
N more steps and leaves its measurer, autoencoder, text tower and latent scale untouched: the
measurer folder is copied byte for byte and the training data is the same seeded render. The
continuation draws its batches from its own seeded stream, so a continued world is the output
of this script given the exported weights it started from (named by sha256 in the marker).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

from ldmprobe.models.reference import REFERENCE_WEIGHTS

from . import world
from .export import stage_export
from .nets import (MEASURER_CONFIG, Conditioning, TokenCache, TokenIdentity, build_tokenizer, convert_text_tower, encode_text_trimmed,
                   image_tensor, log, load_measurer, load_vae, make_train_scheduler, make_unet, make_vae,
                   pixels)

SEED = 20261128
N_IMAGES = 60_000
CHECKPOINT_SECONDS = 180

MEASURER_STEPS = 2500
MEASURER_BATCH = 128
VAE_STEPS = 1200
VAE_BATCH = 48
UNET_BATCH = 64
UNET_LR = 5e-4
CONTINUE_LR = 2.5e-4
CFG_DROPOUT = 0.1
EMA_DECAY = 0.999
REWARM_STEPS = 200


def atomic_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def lr_at(step: int, total: int, base: float, warmup: int = 200) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# --------------------------------------------------------------------------------- data
def stage_data(work: Path, *, name: str = "data.npz", make=None, count: int = N_IMAGES) -> dict:
    """The rendered training set in ``work/name`` (``make(count)`` -> images, scenes; world 1 by default)."""
    path = work / name
    if not path.exists():
        log(f"rendering {count} scenes ({name})")
        images, scenes = make(count) if make is not None else world.dataset(count, SEED)
        fields = {f: np.array([getattr(s, f) for s in scenes]) for f in
                  ("noun", "colour", "background", "size", "modifier", "cx", "cy", "radius")}
        tmp = work / f".{name}.tmp.npz"
        np.savez(tmp, images=images, **fields)
        os.replace(tmp, path)
    data = dict(np.load(path))
    data["scenes"] = [world.Scene(*(data[f][i].item() for f in ("noun", "colour", "background", "size",
                                                               "modifier", "cx", "cy", "radius")))
                      for i in range(len(data["images"]))]
    return data


def captions_for(scenes, indices, rng) -> list[str]:
    return [world.caption(scenes[i], rng) for i in indices]


# ----------------------------------------------------------------------------- measurer
def stage_measurer(work: Path, data: dict, *, steps: int = MEASURER_STEPS, seed: int = SEED,
                   device: str = "cpu", token_loss: float = 0.0) -> None:
    """Train the CLIP-style measurer contrastively on ``data``'s pictures and captions.

    ``token_loss`` > 0 adds that weight of a token-identity loss on the text tower's last hidden
    states (:class:`~reference_world.nets.TokenIdentity`; its vocabulary is every token of 20,000
    captions drawn from its own seeded stream), so words that carry nothing for the measurer stay
    legible to the generator that conditions on those states. 0 (world 1) trains as before.
    """
    import open_clip
    import torch
    import torch.nn.functional as F

    done = work / "measurer.done.pt"
    if done.exists():
        return
    ckpt_path = work / "measurer.pt"
    torch.manual_seed(seed)
    model = open_clip.CLIP(**MEASURER_CONFIG).to(device)
    tokens = TokenCache()
    images, scenes = data["images"], data["scenes"]
    head = None
    params = list(model.parameters())
    if token_loss:
        sample = np.random.default_rng([seed, 9]).choice(len(scenes), min(len(scenes), 20_000), replace=False)
        vocabulary = tokens(captions_for(scenes, sample, np.random.default_rng([seed, 10]))).unique()
        head = TokenIdentity(vocabulary, MEASURER_CONFIG["text_cfg"]["width"], device)
        params.append(head.rows)
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.05)
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if head is not None:
            head.rows.data.copy_(state["token_head"])
        step = state["step"]
        log(f"measurer: resuming at step {step}")
    last_save, started, losses, word_losses = time.time(), time.time(), [], []
    model.train()
    while step < steps:
        rng = np.random.default_rng([seed, 1, step])
        idx = rng.choice(len(images), MEASURER_BATCH, replace=False)
        texts = captions_for(scenes, idx, rng)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, 5e-4)
        img_f = F.normalize(model.encode_image(image_tensor(images[idx]).to(device)), dim=-1)
        batch_tokens = tokens(texts).to(device)
        pooled, hidden = encode_text_trimmed(model, batch_tokens, states=True)
        txt_f = F.normalize(pooled, dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img_f @ txt_f.T
        # identical captions in a batch are all correct matches (soft targets)
        ids = {t: i for i, t in enumerate(dict.fromkeys(texts))}
        cid = torch.tensor([ids[t] for t in texts], device=device)
        same = (cid[:, None] == cid[None, :]).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        losses.append(loss.item())
        if head is not None:
            word_loss = head.loss(hidden, batch_tokens)
            word_losses.append(word_loss.item())
            loss = loss + token_loss * word_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            rate = len(losses) / (time.time() - started)
            words = f", token identity {np.mean(word_losses[-100:]):.3f}" if word_losses else ""
            log(f"measurer step {step}/{steps} loss {np.mean(losses[-100:]):.3f}{words} ({rate:.1f} steps/s)")
        if time.time() - last_save > CHECKPOINT_SECONDS or step == steps:
            extra = {"token_head": head.rows.detach()} if head is not None else {}
            atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, **extra}, ckpt_path)
            last_save = time.time()
    atomic_save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "step": step}, done)


def stage_vae(work: Path, data: dict, *, steps: int = VAE_STEPS, seed: int = SEED, device: str = "cpu") -> None:
    import torch

    done = work / "vae.done.pt"
    if done.exists():
        return
    ckpt_path = work / "vae.pt"
    torch.manual_seed(seed + 2)
    vae = make_vae().to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True, map_location=device)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        log(f"vae: resuming at step {step}")
    images = data["images"]
    last_save, started, losses = time.time(), time.time(), []
    while step < steps:
        rng = np.random.default_rng([seed, 2, step])
        torch.manual_seed(seed * 7 + step)
        x = pixels(images[rng.choice(len(images), VAE_BATCH, replace=False)]).to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, 1e-3, warmup=100)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        kl = posterior.kl().mean() / (4 * 16 * 16)
        loss = (recon - x).abs().mean() + 0.5 * ((recon - x) ** 2).mean() + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            rate = len(losses) / (time.time() - started)
            log(f"vae step {step}/{steps} loss {np.mean(losses[-100:]):.4f} ({rate:.2f} steps/s)")
        if time.time() - last_save > CHECKPOINT_SECONDS or step == steps:
            atomic_save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt_path)
            last_save = time.time()
    atomic_save({"model": {k: v.cpu() for k, v in vae.state_dict().items()}, "step": step}, done)


def stage_latents(work: Path, data: dict) -> dict:
    """Posterior means of every training image, and the scale that gives them unit variance."""
    import torch

    path = work / "latents.npz"
    if not path.exists():
        vae = load_vae(work)
        out = []
        with torch.no_grad():
            for start in range(0, len(data["images"]), 500):
                out.append(vae.encode(pixels(data["images"][start:start + 500])).latent_dist.mean.numpy())
        latents = np.concatenate(out).astype(np.float32)
        x = pixels(data["images"][:2000])
        with torch.no_grad():
            recon = vae.decode(torch.from_numpy(latents[:2000])).sample.clamp(-1, 1)
        mse = float(((recon - x) / 2).pow(2).mean())
        psnr = 10 * math.log10(1 / mse)
        scale = float(1.0 / latents.std())
        log(f"latents: std {latents.std():.3f}, scaling factor {scale:.4f}, round-trip PSNR {psnr:.1f} dB")
        tmp = work / ".latents.tmp.npz"
        np.savez(tmp, latents=latents, scale=scale, psnr=psnr)
        os.replace(tmp, path)
    got = np.load(path)
    return {"latents": got["latents"], "scale": float(got["scale"]), "psnr": float(got["psnr"])}


def stage_unet(work: Path, data: dict, lat: dict, total_steps: int, *, start: Path | None = None,
               cond_encoder=None, seed: int = SEED, device: str = "cpu", noise_offset: float = 0.0,
               zero_snr: bool = False, resume_at: int = 0, high_noise: float = 0.0) -> None:
    """Train the UNet for ``total_steps``; from scratch, or from the UNet folder ``start``.

    ``noise_offset`` adds that much of one normal draw per image and channel to the noise (the
    "offset noise" recipe), so the model learns to set a picture's mean colour from the start;
    ``zero_snr`` trains v-prediction on a zero-terminal-SNR schedule (:func:`make_train_scheduler`).
    ``resume_at``: ``start`` is this recipe's own UNet exported after that many steps (a training
    carried over between machines): the steps, batches and learning-rate schedule go on where it
    stopped (``total_steps`` more of ``resume_at + total_steps``), with the rate re-warmed over
    :data:`REWARM_STEPS` because the optimiser's moments start again.
    ``high_noise``: that share of each batch draws its timestep from the noisier half (500-999)
    instead of all 1,000 (0: uniform, as every shipped recipe).
    """
    import copy

    import torch
    import torch.nn.functional as F

    ckpt_path = work / "unet.pt"
    torch.manual_seed(seed + 3)
    unet = make_unet()
    stream, base_lr = (3, UNET_LR) if start is None or resume_at else (4, CONTINUE_LR)
    if start is not None:
        from safetensors.torch import load_file

        weights = load_file(str(start / "diffusion_pytorch_model.safetensors"))
        unet.load_state_dict({k: v.float() for k, v in weights.items()})
    unet.to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=base_lr, weight_decay=0.0)
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True, map_location=device)
        unet.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        log(f"unet: resuming at step {step}")
    if step >= total_steps:
        return
    encoder = cond_encoder if cond_encoder is not None else convert_text_tower(load_measurer(work))
    cond = Conditioning(encoder, build_tokenizer())
    sched = make_train_scheduler(zero_snr)
    latents = torch.from_numpy(lat["latents"]) * lat["scale"]
    scenes = data["scenes"]
    last_save, started, losses, first = time.time(), time.time(), [], step
    unet.train()
    while step < total_steps:
        rng = np.random.default_rng([seed, stream, resume_at + step])
        gen = torch.Generator().manual_seed(seed * 11 * (stream - 2) + resume_at + step)
        idx = rng.choice(len(latents), UNET_BATCH, replace=False)
        texts = [("" if rng.random() < CFG_DROPOUT else world.caption(scenes[i], rng)) for i in idx]
        x0 = latents[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (UNET_BATCH,), generator=gen)
        if high_noise:
            n_high = int(round(high_noise * UNET_BATCH))
            t[:n_high] = torch.randint(500, 1000, (n_high,), generator=gen)
        if noise_offset:
            noise = noise + noise_offset * torch.randn(x0.shape[:2] + (1, 1), generator=gen)
        x0, noise, t = x0.to(device), noise.to(device), t.to(device)
        xt = sched.add_noise(x0, noise, t)
        for group in opt.param_groups:
            group["lr"] = (lr_at(resume_at + step, resume_at + total_steps, base_lr, warmup=300)
                           * (min(1.0, (step + 1) / REWARM_STEPS) if resume_at else 1.0))
        pred = unet(xt, t, encoder_hidden_states=cond(texts).to(device)).sample
        loss = F.mse_loss(pred, sched.get_velocity(x0, noise, t) if zero_snr else noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = EMA_DECAY if resume_at else min(EMA_DECAY, (1 + step) / (10 + step))  # resumed: ema is one
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.lerp_(p, 1 - decay)
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            rate = (step - first) / (time.time() - started)
            log(f"unet step {resume_at + step}/{resume_at + total_steps} loss {np.mean(losses[-100:]):.4f} ({rate:.2f} steps/s)")
        if time.time() - last_save > CHECKPOINT_SECONDS or step == total_steps:
            atomic_save({"model": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                         "step": step}, ckpt_path)
            last_save = time.time()


def fine_tune_shipped(work: Path, steps: int, *, experiment: str, high_noise: float = 0.0,
                      weights: Path = REFERENCE_WEIGHTS, story: str | None = None) -> Path:
    """Fine-tune the shipped world 2 UNet for ``steps`` on its own story (as the story module
    draws it when called: an experiment may patch it first), or on the named ``story``
    (``world2.STORIES``; the export's recipe then names it, so evaluations judge by it); returns
    the exported weights.

    The recipe is otherwise the shipped one's (read from its marker); ``experiment`` is recorded
    in the export. ``work`` resumes a fine-tune it holds.
    """
    import json

    from . import world2

    recipe = json.loads((weights / "generator" / "ldmprobe_reference.json").read_text())["recipe"]
    if story is not None:
        recipe = {**recipe, "story": world2.story_of({"story": story}).name}
    record = stage_seed_from_weights(work, weights)
    gen = stage_data(work, name="data.npz", count=recipe["images"],
                     make=lambda n: world2.dataset(n, recipe["seed"], "generator", world2.story_of(recipe)))
    lat = stage_latents(work, gen)
    lat["scale"] = record["scale"]
    stage_unet(work, gen, lat, steps, start=work / "start_unet", cond_encoder=convert_text_tower(load_measurer(work)),
               seed=recipe["seed"], noise_offset=recipe["noise_offset"], zero_snr=recipe.get("zero_snr", False),
               high_noise=high_noise)
    out = work / "weights"
    if not (out / "generator" / "model_index.json").exists():
        stage_export(work, out, lat, seed=recipe["seed"], step_offset=record["unet_steps"],
                     scheduler=recipe["scheduler"], zero_snr=recipe.get("zero_snr", False),
                     extra={"world": world2.WORLD_VERSION, "recipe": recipe, "experiment": experiment})
    return out


def stage_seed_from_weights(work: Path, weights: Path) -> dict:
    """Seed a training folder from an exported world; returns what the continuation starts from."""
    import hashlib
    import json

    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    record_path = work / "continue.json"
    unet_file = weights / "generator" / "unet" / "diffusion_pytorch_model.safetensors"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if not (work / "unet.pt").exists():
            got = hashlib.sha256(unet_file.read_bytes()).hexdigest()
            if got != record["unet_sha256"]:
                raise SystemExit(f"{unet_file} changed since this continuation began; use a new --work")
        return record
    marker = json.loads((weights / "generator" / "ldmprobe_reference.json").read_text())
    vae_config = json.loads((weights / "generator" / "vae" / "config.json").read_text())
    measurer = load_file(str(weights / "measurer" / "open_clip_model.safetensors"))
    atomic_save({"model": {k: v.float() for k, v in measurer.items()}, "step": -1}, work / "measurer.done.pt")
    vae = AutoencoderKL.from_pretrained(str(weights / "generator" / "vae"), torch_dtype=torch.float32)
    atomic_save({"model": vae.state_dict(), "step": -1}, work / "vae.done.pt")
    record = {"unet_steps": int(marker["unet_steps"]), "scale": float(vae_config["scaling_factor"]),
              "unet_sha256": hashlib.sha256(unet_file.read_bytes()).hexdigest(),
              "continued_from": marker.get("continued_from", []) + [
                  {"unet_steps": int(marker["unet_steps"]),
                   "unet_sha256": hashlib.sha256(unet_file.read_bytes()).hexdigest()}]}
    start = work / "start_unet"
    start.mkdir(exist_ok=True)
    (start / "diffusion_pytorch_model.safetensors").write_bytes(unet_file.read_bytes())
    tmp = work / ".continue.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, record_path)
    log(f"continuing from {weights} (UNet step {record['unet_steps']})")
    return record


def main(argv=None) -> int:
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--world", type=int, choices=(1, 2), default=1)
    if first.parse_known_args(argv)[0].world == 2:
        from .train2 import main as main2

        return main2(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="--world 2 trains reference world 2 (see --world 2 --help)")
    parser.add_argument("--world", type=int, choices=(1, 2), default=1,
                        help="which reference world (1: the shipped one; 2: issue 27's, see train2.py)")
    parser.add_argument("--work", type=Path, required=True, help="checkpoint folder")
    parser.add_argument("--out", type=Path, default=REFERENCE_WEIGHTS)
    parser.add_argument("--unet-steps", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--export-only", action="store_true", help="export the latest checkpoint")
    parser.add_argument("--continue-from", type=Path, default=None, metavar="WEIGHTS",
                        help="train an exported world's UNet --unet-steps more steps (measurer, "
                             "autoencoder and text tower kept)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    data = stage_data(args.work)
    if args.continue_from is not None:
        record = stage_seed_from_weights(args.work, args.continue_from)
        lat = stage_latents(args.work, data)
        lat["scale"] = record["scale"]  # the UNet was trained on latents at the exported scale
        if not args.export_only:
            from transformers import CLIPTextModel

            encoder = CLIPTextModel.from_pretrained(str(args.continue_from / "generator" / "text_encoder"),
                                                    torch_dtype=torch.float32).eval()
            stage_unet(args.work, data, lat, args.unet_steps, start=args.work / "start_unet",
                       cond_encoder=encoder)
        stage_export(args.work, args.out, lat, seed=SEED, step_offset=record["unet_steps"],
                     extra={"continued_from": record["continued_from"]})
        return 0
    if not args.export_only:
        stage_measurer(args.work, data)
        stage_vae(args.work, data)
    lat = stage_latents(args.work, data)
    if not args.export_only:
        stage_unet(args.work, data, lat, args.unet_steps)
    stage_export(args.work, args.out, lat, seed=SEED)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
