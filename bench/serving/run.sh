#!/usr/bin/env bash
# The serving benchmark in one command: setup (skipped when done), then every server, model
# and connection count. Writes bench/serving/RESULTS.md and bench/serving/results.json.
#   bench/serving/run.sh                          # full run, about 20 minutes
#   bench/serving/run.sh --duration 3 --rounds 1  # smoke run
set -euo pipefail
cd "$(dirname "$0")/../.."
bench/serving/setup.sh
BENCH_COMMAND="bench/serving/run.sh${*:+ $*}" exec .venv/bin/python bench/serving/run.py "$@"
