"""Generation defaults shared by every command that makes images (sweep, assoc, neighbours)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ldmprobe.errors import BadInputError

DEFAULT_STEPS = 50
DEFAULT_TINY_STEPS = 4  # the tiny pipeline's images do not improve with steps
DEFAULT_GUIDANCE = 7.5


@dataclass(frozen=True)
class GenerationSettings:
    """Steps and guidance: the command line's value, else the spec's, else the default."""

    steps: int
    guidance: float

    @classmethod
    def resolve(cls, *, steps: int | None, guidance: float | None, spec_steps: int | None = None,
                spec_guidance: float | None = None, tiny: bool = False,
                model_guidance: float | None = None) -> GenerationSettings:
        """``model_guidance``: the generator's own default scale (``configs.default_guidance``),
        used when neither the command nor the spec sets one; else :data:`DEFAULT_GUIDANCE`."""
        default_steps = DEFAULT_TINY_STEPS if tiny else DEFAULT_STEPS
        check_guidance(guidance)
        default_guidance = DEFAULT_GUIDANCE if model_guidance is None else model_guidance
        return cls(
            steps=int(steps or spec_steps or default_steps),
            guidance=float(guidance if guidance is not None else
                           spec_guidance if spec_guidance is not None else default_guidance),
        )


def check_guidance(value, option: str = "--guidance") -> None:
    """A guidance scale must be a finite number ≥ 0 (click's FloatRange lets nan and inf through)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise BadInputError(f"{option} {value}: the guidance scale must be a finite number ≥ 0, e.g. "
                            f"{option} {DEFAULT_GUIDANCE} (values ≤ 1 turn classifier-free guidance off).")


def check_image_side(value, option: str, multiple: int = 8) -> None:
    """An image side must be a positive multiple of ``multiple`` (the VAE downsamples by 8)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % multiple:
        lower = value // multiple * multiple if isinstance(value, int) and value > 0 else 0
        fix = f"{option} {lower} or {lower + multiple}" if lower > 0 else f"{option} 512"
        raise BadInputError(f"{option} {value}: must be a positive multiple of {multiple} (what the model's "
                            f"autoencoder and UNet accept); use e.g. {fix}.")
