"""Association specs as data: the four sets X, Y, A, B and the test settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ldmprobe.specs.generation import DEFAULT_GUIDANCE, DEFAULT_STEPS, DEFAULT_TINY_STEPS  # noqa: F401  (re-exported)


SET_NAMES = ("X", "Y", "A", "B")


ASSOC_KEYS = ("name", "description", "source", "steps", "guidance", "negative_prompt",
              *SET_NAMES, "test")


SET_KEYS = ("label", "words", "templates", "prompts", "seeds", "embeddings", "images")


FILE_KINDS = ("embeddings", "images")  # sets read from the user's own files (specs.assoc_sources)


TEST_KEYS = ("ddof", "permutations", "seed")


DEFAULT_DDOF = 1


DEFAULT_PERMUTATIONS = 100_000


DEFAULT_TEST_SEED = 0


MAX_PERMUTATIONS = 100_000_000


_ROLE = {"X": "target", "Y": "target", "A": "attribute", "B": "attribute"}


_KEY_ALIASES = {
    "title": "name",
    "citation": "source",
    "reference": "source",
    "ref": "source",
    "x": "X", "y": "Y", "a": "A", "b": "B",
    "stats": "test",
    "statistics": "test",
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "cfg": "guidance",
    "negative": "negative_prompt",
    # set-table keys
    "terms": "words",
    "template": "templates",
    "prompt": "prompts",
    "seed": "seeds",
    "embedding": "embeddings",
    "file": "embeddings",
    "path": "embeddings",
    "image": "images",
    "folder": "images",
    # test-table keys
    "n_permutations": "permutations",
    "n_resamples": "permutations",
    "resamples": "permutations",
    "random_seed": "seed",
}


@dataclass(frozen=True)
class AssocSet:
    """One of X, Y, A, B: words (optionally inside templates), prompts × seeds, or the user's own
    file of embeddings / folder of images (an absolute path; ``n_items`` once it is read)."""

    name: str  # "X", "Y", "A" or "B"
    label: str
    words: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    embedding_file: str = ""  # TOML key ``embeddings``
    image_folder: str = ""  # TOML key ``images``
    n_items: int = 0

    @property
    def kind(self) -> str:
        """``"words"`` (text embeddings), ``"prompts"`` (generated images), ``"embeddings"`` (a
        file) or ``"images"`` (a folder the measurer embeds)."""
        if self.prompts:
            return "prompts"
        return "embeddings" if self.embedding_file else "images" if self.image_folder else "words"

    @property
    def path(self) -> str:
        """The file or folder of a set read from the user's files; "" otherwise."""
        return self.embedding_file or self.image_folder

    @property
    def size(self) -> int:
        """Number of embeddings the set contributes (one per word, image or row)."""
        if self.path:
            return self.n_items
        return len(self.prompts) * len(self.seeds) if self.prompts else len(self.words)

    def images(self) -> list[tuple[str, int]]:
        """The (prompt, seed) of every image, prompt-major; [] for a word set."""
        return [(p, s) for p in self.prompts for s in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "kind": self.kind, "n": self.size}
        if self.path:
            out["path"] = self.path
        elif self.kind == "words":
            out["words"] = list(self.words)
            out["templates"] = list(self.templates)
        else:
            out["prompts"] = list(self.prompts)
            out["seeds"] = list(self.seeds)
        return out


@dataclass(frozen=True)
class AssocSpec:
    """A validated association spec; ``path`` is where it was read from."""

    name: str
    X: AssocSet
    Y: AssocSet
    A: AssocSet
    B: AssocSet
    description: str = ""
    source: str = ""  # the citation
    ddof: int | None = None  # from [test]; None: not set in the spec
    permutations: int | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    path: str = "<inline>"

    @property
    def sets(self) -> dict[str, AssocSet]:
        return {"X": self.X, "Y": self.Y, "A": self.A, "B": self.B}

    @property
    def needs_generator(self) -> bool:
        """True when any set is made of generated images."""
        return any(s.kind == "prompts" for s in self.sets.values())

    @property
    def needs_measurer(self) -> bool:
        """False when every set is a file of embeddings (no model is loaded then)."""
        return any(s.kind != "embeddings" for s in self.sets.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "path": self.path,
            **{k: s.to_dict() for k, s in self.sets.items()},
            "test": {"ddof": self.ddof, "permutations": self.permutations, "seed": self.seed},
            "steps": self.steps,
            "guidance": self.guidance,
            "negative_prompt": self.negative_prompt,
        }
