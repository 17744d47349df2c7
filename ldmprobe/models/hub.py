"""Hub access: offline mode, a quick reachability probe, and the message when weights cannot be had."""

from __future__ import annotations

import os
import socket
import sys
import urllib.parse


_TRUE = {"1", "true", "yes", "on"}

#: Set when :func:`set_hub_offline` switched huggingface_hub off itself (the hub could not be
#: reached, or a model was cached): HF_HUB_OFFLINE then says nothing about what the user asked.
_SWITCHED_OFF_HERE = False


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def offline_requested(flag: bool = False) -> bool:
    """True when the user asked never to touch the network (the flag, LDMPROBE_OFFLINE, or an
    HF_HUB_OFFLINE the user set; not one that :func:`set_hub_offline` set)."""
    if flag or _env_true("LDMPROBE_OFFLINE"):
        return True
    return _env_true("HF_HUB_OFFLINE") and not _SWITCHED_OFF_HERE


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint, so an unreachable hub fails in seconds."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urllib.parse.urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def set_hub_offline() -> None:
    """Make huggingface_hub answer from its cache only (no retries against the network)."""
    global _SWITCHED_OFF_HERE
    if not _env_true("HF_HUB_OFFLINE"):
        _SWITCHED_OFF_HERE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # already imported: the env var alone is not re-read
        constants.HF_HUB_OFFLINE = True


def unavailable_message(what: str, tried: str, reason: str) -> str:
    return (
        f"Could not load {what}: {tried} {reason}. Ways forward: (1) run once with network "
        "access so the weights are cached (or warm the Hugging Face cache on another machine "
        "and copy it, HF_HOME); (2) point at a local folder that holds the model; or "
        "(3) use the built-in 'tiny' models (--pipeline tiny --measurer tiny) for a smoke run "
        "whose numbers mean nothing."
    )
