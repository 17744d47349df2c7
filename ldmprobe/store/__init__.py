"""Every byte ldmprobe keeps under its cache folder (``$LDMPROBE_CACHE``), and nothing else.

- :mod:`~ldmprobe.store.files`: the cache root, atomic writes, staging folders, copies that share
  no bytes (run folders), the hint an error about a cached file carries.
- :mod:`~ldmprobe.store.cleanup`: temp files and staging folders left by killed processes.
- :mod:`~ldmprobe.store.run_state`: what one run noticed (failed checks, namespace identities).
- :mod:`~ldmprobe.store.diskspace`: the free-space checks before images and model builds.
- :mod:`~ldmprobe.store.images` (``images/``), with :mod:`~ldmprobe.store.png_check` and the
  save-time manifest :mod:`~ldmprobe.store.image_index`; :mod:`~ldmprobe.store.claims`
  (``images/claims/``: several processes on one cache).
- :mod:`~ldmprobe.store.packed_cache` (``embeddings/``, ``text/``, ``cond/``: verified arrays by
  key) on :mod:`~ldmprobe.store.packed_store` / :mod:`~ldmprobe.store.packed_format`, compaction
  in :mod:`~ldmprobe.store.packed_maint`, the old per-file cache read by
  :mod:`~ldmprobe.store.packed_legacy`.
- :mod:`~ldmprobe.store.array_store`: one checked ``.npy`` per key (``text/vocab``, trace caches).
- :mod:`~ldmprobe.store.token_counts` (``token_counts/``) and :mod:`~ldmprobe.store.word_lists`
  (``vocab/``): the generator's token counts and extracted vocabularies.

Imports nothing heavy and nothing of ldmprobe beyond its foundation (errors, digest): every
stage builds on it.
"""
