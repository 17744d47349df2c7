"""Exit codes and the error types the CLI turns into one-paragraph messages."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    RUNTIME = 1
    BAD_INPUT = 2
    INTERRUPTED = 130


class LdmprobeError(Exception):
    """An error with a message meant for the user (no traceback unless -v)."""

    exit_code: ExitCode = ExitCode.RUNTIME


class BadInputError(LdmprobeError):
    """The user's input (spec, option, vocabulary file) is wrong; exit 2."""

    exit_code = ExitCode.BAD_INPUT


class SpecError(BadInputError):
    """A spec file is missing, malformed, or inconsistent."""


class ModelUnavailableError(LdmprobeError):
    """Weights could not be found locally nor fetched; exit 1."""


class UnknownModelError(BadInputError):
    """A model name that matches no preset, hub id form, or local folder."""
