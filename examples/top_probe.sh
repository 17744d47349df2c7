#!/usr/bin/env bash
# For each term of a sweep, the probe word its images moved toward most (tab-separated).
#   bash examples/top_probe.sh [SPEC] [extra sweep flags...]
# Offline by default (tiny models: the numbers mean nothing); pass --pipeline sd15
# --measurer ViT-L-14-quickgelu:openai on a GPU machine for a real run.
set -euo pipefail
spec=${1:-fancy-house}
shift || true
ldmprobe sweep "$spec" --pipeline tiny --measurer tiny --seeds 2 --no-report --format json "$@" \
  | jq -r '.terms[] | [.term, (.probes[0].probe // "-"), (.probes[0].shift // 0 | tostring),
                       (.probes[0].p_adjusted // 1 | tostring)] | @tsv'
