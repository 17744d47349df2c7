"""The one lazy model loader every command uses: resolve once, load each model on first use.

A fully cached sweep rerun asks for neither model and so imports no torch.
"""

from __future__ import annotations

from typing import Any

from ldmprobe.models import load as model_load

from ldmprobe.models import sources as models


class ModelLoader:
    """A generator and a measurer, resolved up front and loaded when first asked for."""

    def __init__(self, generator_ref: models.GeneratorRef | None, measurer_ref: models.MeasurerRef, *,
                 device: str, dtype: str, offline: bool = False, generator: Any = None, measurer: Any = None):
        self.generator_ref, self.measurer_ref = generator_ref, measurer_ref
        self.device, self.dtype, self.offline = device, dtype, offline
        self._generator, self._measurer = generator, measurer

    @classmethod
    def from_names(cls, *, pipeline: str | None, revision: str | None, measurer: str, device: str = "auto",
                   dtype: str = "auto", offline: bool = False, needs_generator: bool = True) -> ModelLoader:
        """Resolve ``--pipeline`` / ``--measurer`` and pick the device (``--device``, ``--dtype``)."""
        measurer_ref = models.resolve_measurer(measurer)
        generator_ref = models.resolve_generator(pipeline, revision) if needs_generator else None
        if offline:
            models.set_hub_offline()
        chosen_device, chosen_dtype = model_load.pick_device(device)
        loader = cls(generator_ref, measurer_ref, device=chosen_device,
                     dtype=chosen_dtype if dtype == "auto" else dtype, offline=offline)
        loader.auto_dtype = dtype == "auto"
        return loader

    @property
    def tiny(self) -> bool:
        """Whether either model is a tiny one (random weights: its numbers mean nothing)."""
        return self.measurer_ref.is_tiny or (self.generator_ref is not None and self.generator_ref.is_tiny)

    @property
    def reference(self) -> bool:
        """Whether either model is the shipped reference world's."""
        return self.measurer_ref.is_reference or (self.generator_ref is not None and self.generator_ref.is_reference)

    def get_generator(self):
        if self._generator is None:
            if self.generator_ref is None:
                raise ValueError("this loader was made without a generator")
            if getattr(self, "auto_dtype", False):  # SD 3 / Flux on CUDA: bfloat16, as released
                from ldmprobe.models.runtime import preferred_dtype

                folder = models.locate_generator(self.generator_ref, offline=self.offline, configs_only=True)
                self.dtype = preferred_dtype(folder, self.device, self.dtype)
            self._generator = model_load.load_generator(self.generator_ref, device=self.device, dtype=self.dtype,
                                                    offline=self.offline)
        return self._generator

    def get_measurer(self):
        if self._measurer is None:
            self._measurer = model_load.load_measurer(self.measurer_ref, device=self.device, offline=self.offline)
        return self._measurer

    generator = get_generator
    measurer = get_measurer


class LazyGenerator:
    """The loader's generator as a loaded one looks, loading its weights only when ``pipe`` is
    used: its recipe (identity, scheduler, native size, dtype) and tokenizer come from the
    folder, so a run whose images are all cached never loads the pipeline."""

    def __init__(self, loader: ModelLoader):
        self._loader = loader
        self.ref = loader.generator_ref
        self.device, self.dtype = loader.device, loader.dtype
        self.folder = models.locate_generator(self.ref, offline=loader.offline, configs_only=True)
        self._identity = self._tokenizer = None

    @property
    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = models.generator_identity(self.ref, self.folder)
        return self._identity

    @property
    def image_size(self) -> tuple[int, int]:
        return models.native_image_size(self.folder)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = model_load.load_generator_tokenizer(self.ref, offline=self._loader.offline)
        return self._tokenizer

    @property
    def pipe(self):
        return self._loader.get_generator().pipe

    @property
    def safety_checker(self):
        return self._loader.get_generator().safety_checker
