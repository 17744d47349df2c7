"""The notes a run's summary carries, as every view shows them: the summary's own notes, then
the design check's messages, one per topic."""

from __future__ import annotations


def summary_notes(summary: dict) -> list[str]:
    """``summary["notes"]`` then ``summary["design"]["messages"]``; a message on a topic a note
    already covers (the same words before the first ':', e.g. "no controls") is left out, so
    the reader sees the fuller sentence once."""
    shown, topics = [], set()
    for note in [*(summary.get("notes") or ()), *((summary.get("design") or {}).get("messages") or ())]:
        topic = note.split(":", 1)[0].strip().lower() if ":" in note else None
        if note in shown or (topic is not None and topic in topics):
            continue
        shown.append(note)
        if topic is not None:
            topics.add(topic)
    return shown
