"""Facts about CLIP's byte-level BPE file that open_clip ships (bpe_simple_vocab_16e6.txt.gz)."""

#: Merges used by CLIP: lines 1..N_MERGES after the header line.
N_MERGES = 49152 - 256 - 2
