"""Hub access: offline mode, a quick reachability probe, and the message when weights cannot be had."""

from __future__ import annotations

import os
import socket
import sys
import urllib.parse


def offline_requested(flag: bool = False) -> bool:
    """True when the user asked never to touch the network."""
    env = os.environ.get("LDMPROBE_OFFLINE", "") or os.environ.get("HF_HUB_OFFLINE", "")
    return flag or env.strip().lower() in {"1", "true", "yes", "on"}


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
