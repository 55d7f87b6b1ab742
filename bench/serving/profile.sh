#!/usr/bin/env bash
# Profile fermion's server under load with py-spy: where one core's time goes.
#   bench/serving/profile.sh cnn json|binary     or     bench/serving/profile.sh mlp json
# Needs the artifacts of a benchmark run (bench/serving/.work/artifacts) and py-spy in .venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-cnn}; MODE=${2:-json}; PORT=${PORT:-8199}
A=bench/serving/.work/artifacts
[ -f "$A/$MODEL.pt" ] || { echo "run bench/serving/run.sh first (it writes $A)" >&2; exit 2; }
.venv/bin/python -c "import py_spy" 2>/dev/null || .venv/bin/pip install -q py-spy
case $MODEL in
  mlp) INPUT=input__0:FP32:-1,256 ;;
  cnn) INPUT=input__0:FP32:-1,3,64,64 ;;
  *) echo "model: mlp or cnn" >&2; exit 2 ;;
esac
OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python -m fermion.runtime_images.server "$A/$MODEL.pt" \
  --name "$MODEL" --input "$INPUT" --host 127.0.0.1 --port "$PORT" --max-batch-size 32 \
  --max-delay-ms 2 --log-level warning &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "localhost:$PORT/v2/health/ready" >/dev/null && break; sleep 0.2; done
if [ "$MODE" = binary ]; then
  export BENCH_BODY=$A/cnn.bin BENCH_CONTENT_TYPE=application/octet-stream
  BENCH_HEADER_LENGTH=$(cd bench/serving && ../../.venv/bin/python -c "import models; print(models.v2_binary_body('cnn')[1])")
  export BENCH_HEADER_LENGTH
else
  export BENCH_BODY=$A/$MODEL.json
fi
taskset -c 1 wrk -t1 -c32 -d14s -s bench/serving/post.lua "http://127.0.0.1:$PORT/v2/models/$MODEL/infer" >/dev/null &
LOAD=$!
sleep 3
.venv/bin/py-spy record -p "$SERVER" -d 8 -r 250 -f raw -o /tmp/fermion-profile.txt --nonblocking >/dev/null 2>&1
wait $LOAD
.venv/bin/python bench/serving/profile_summary.py /tmp/fermion-profile.txt
# The mean batch under this load (profiled, so a little below an unprofiled run's).
curl -s "localhost:$PORT/metrics" | awk '/^fermion_batch_size_sum/ {s=$2} /^fermion_batch_size_count/ {c=$2}
  END {if (c) printf "\nmean batch: %.1f samples over %d batches\n", s/c, c}'
