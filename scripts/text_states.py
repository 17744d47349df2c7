"""How far apart an exported reference world's text encoder puts words, as the UNet sees them.

    python scripts/text_states.py WEIGHTS [--against nice] [--template "a photo of the {} house"]
        [WORD ...]

WEIGHTS is an exported world (its ``generator/`` folder is read) or a training folder with a
finished measurer (``measurer.done.pt``: the text tower is made from it as the export makes it).

For each word, the largest and the mean distance over the 77 token positions between the last
hidden states of the template filled with it and filled with ``--against`` (the state norm is
printed for scale). A generator-borne word (issue 27) reaches the UNet only through this
difference: a word the measurer learned to ignore sits close to every other such word.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

WORDS = ("", "plain", "good", "fancy", "quiet", "old", "lavish", "purple", "yellow")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="an exported reference world, or a training folder")
    parser.add_argument("words", nargs="*", default=list(WORDS))
    parser.add_argument("--against", default="nice")
    parser.add_argument("--template", default="a photo of the {} house")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.set_num_threads(1)
    root = args.weights / "generator"
    if (args.weights / "measurer.done.pt").exists():
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from reference_world.nets import build_tokenizer, convert_text_tower, load_measurer

        tokenizer, encoder = build_tokenizer(), convert_text_tower(load_measurer(args.weights))
    else:
        tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer"))
        encoder = CLIPTextModel.from_pretrained(str(root / "text_encoder"), torch_dtype=torch.float32).eval()
    words = [args.against, *args.words]
    prompts = [" ".join(args.template.replace("{}", w).split()) for w in words]
    ids = tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        states = encoder(ids).last_hidden_state
    base = states[0]
    print(f"against {args.against!r} in {args.template!r}; state norm {base.norm(dim=-1).mean():.2f}")
    for word, state in zip(words[1:], states[1:]):
        gap = (state - base).norm(dim=-1)
        print(f"{word or '(bare)':>10}  largest {gap.max():.2f}  mean {gap.mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
