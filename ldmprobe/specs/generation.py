"""Generation defaults shared by every command that makes images (sweep, assoc, neighbours)."""

from __future__ import annotations

from dataclasses import dataclass

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
                spec_guidance: float | None = None, tiny: bool = False) -> GenerationSettings:
        default_steps = DEFAULT_TINY_STEPS if tiny else DEFAULT_STEPS
        return cls(
            steps=int(steps or spec_steps or default_steps),
            guidance=float(guidance if guidance is not None else
                           spec_guidance if spec_guidance is not None else DEFAULT_GUIDANCE),
        )
