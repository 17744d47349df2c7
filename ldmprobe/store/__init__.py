"""Every byte ldmprobe keeps under its cache folder (``$LDMPROBE_CACHE``): images, packed and
per-key embeddings, token counts, word lists, built models' staging, claims, temp cleanup,
compaction, disk-space checks, and what one run noticed (:mod:`~ldmprobe.store.run_state`).
The first stage: it imports nothing of ldmprobe beyond the foundation (docs/ARCHITECTURE.md)."""
