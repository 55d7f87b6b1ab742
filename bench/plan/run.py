"""How `fermion plan` scales with an environment's services, against the mock engine alone.

For each service count N it writes an environment with N services (and the pools they need),
then, in fresh processes, times:
- `fermion plan ENV --json`, end to end, as a user runs it;
- the engine alone: a program that registers the same number of bare resources, with the same
  nesting, under the same Pulumi SDK mock monitor, with nothing of fermion's.
The difference is what fermion itself costs. Writes bench/plan/RESULTS.md and results.json.

    .venv/bin/python bench/plan/run.py                 # 1, 10, 25, 50, 100 services, 3 rounds
    .venv/bin/python bench/plan/run.py --counts 1 10 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SERVICES_PER_POOL = 25

# Registers `count` resources (components holding custom resources, like a plan's tree) under
# the SDK's mock monitor, and nothing else: the engine's share of a plan of that size.
ENGINE_ONLY = """
import asyncio, sys, time
start = time.perf_counter()
import pulumi
from pulumi.runtime.stack import wait_for_rpcs
# The provider SDK modules a plan loads: not fermion's code, but every such program pays them.
# They load lazily, on first use of a class, so each is touched.
import pulumi_aws as aws, pulumi_kubernetes as k8s, pulumi_docker_build as docker_build
used = [
    aws.autoscaling.Tag, aws.cloudwatch.LogGroup, aws.ec2.Vpc, aws.ecr.Repository,
    aws.eks.Cluster, aws.iam.Role, aws.kms.Key, aws.s3.Bucket, aws.get_region,
    k8s.Provider, k8s.core.v1.Namespace, k8s.helm.v3.Release, docker_build.Image,
]
imported = time.perf_counter()

class Bare(pulumi.runtime.Mocks):
    def new_resource(self, args):
        return "", dict(args.inputs)
    def call(self, args):
        return {}, []

class Holder(pulumi.ComponentResource):
    def __init__(self, name):
        super().__init__("bench:index:Holder", name, None, None)

count = int(sys.argv[1])
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
pulumi.runtime.set_mocks(Bare(), project="bench", stack="bench", preview=True)
holders = [Holder(f"h{i}") for i in range(max(1, count // 10))]
for i in range(count - len(holders)):
    pulumi.CustomResource(
        "bench:index:Thing", f"r{i}", {"tags": {"i": str(i)}, "size": i},
        opts=pulumi.ResourceOptions(parent=holders[i % len(holders)]),
    )
loop.run_until_complete(wait_for_rpcs())
print(imported - start, time.perf_counter() - imported)
"""


def environment(services: int) -> dict[str, object]:
    pools = (services + SERVICES_PER_POOL - 1) // SERVICES_PER_POOL
    return {
        "config": {
            "aws:region": "us-east-1",
            "fermion:environment": {
                "network": {"availability_zones": 3, "nat": "per_az"},
                "node_pools": [
                    {"name": f"cpu-{p}", "shape": "cpu.large", "size": {"min": 0, "max": 100}}
                    for p in range(pools)
                ],
                "services": [
                    {
                        "name": f"svc-{i:03d}",
                        "shape": "cpu.large",
                        "model": {"format": "torchscript", "version": "1"},
                        "inputs": ["input__0:FP32:-1,16"],
                        "replicas": {"min": 0, "max": 1},
                    }
                    for i in range(services)
                ],
            },
        }
    }


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 25, 50, 100])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    python = sys.executable
    rows = []
    with tempfile.TemporaryDirectory(prefix="fermion-plan-bench-") as scratch:
        stacks = Path(scratch) / "stacks"
        stacks.mkdir()
        env = {**os.environ, "FERMION_STACKS_DIR": str(stacks)}
        for count in args.counts:
            name = f"svc{count}"
            (stacks / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(environment(count)))
            plan_times, import_times, engine_times = [], [], []
            resources = 0
            for _ in range(args.rounds):
                seconds, stdout = timed(
                    [python, "-m", "fermion.cli", "plan", name, "--json"], env, Path(scratch)
                )
                plan_times.append(seconds)
                resources = len(json.loads(stdout)["resources"])
                _, engine_out = timed([python, "-c", ENGINE_ONLY, str(resources)], env, REPO)
                imports, engine = (float(x) for x in engine_out.split())
                import_times.append(imports)
                engine_times.append(engine)
            row = {
                "services": count,
                "resources": resources,
                "plan_s": statistics.median(plan_times),
                "sdk_imports_s": statistics.median(import_times),
                "engine_only_s": statistics.median(engine_times),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    write_results(rows, args.rounds)


def write_results(rows: list[dict[str, float]], rounds: int) -> None:
    (HERE / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    first, last = rows[0], rows[-1]
    slope = (last["plan_s"] - first["plan_s"]) / max(1, last["resources"] - first["resources"])
    lines = [
        "# `fermion plan`: time against environment size",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}. Median of {rounds} rounds, each a fresh process.",
        "",
        "`plan` is `fermion plan ENV --json` end to end (start-up, imports, spec checks, every "
        "service's build context rendered, the program under mocks, cost, JSON). `SDK imports` "
        "is importing pulumi and the provider SDK modules a plan uses. `engine` is the Pulumi "
        "SDK's mock monitor registering the same number of bare resources, with nothing of "
        "fermion's. The rest is fermion's share: its own imports and checks, composing the "
        "components, rendering build contexts, and richer inputs than bare resources carry. "
        "Each service adds a runtime image; every 25 services add a node pool.",
        "",
        "| services | resources | plan (s) | SDK imports (s) | engine (s) | fermion's share (s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['services']} | {row['resources']} | {row['plan_s']:.2f} | "
            f"{row['sdk_imports_s']:.2f} | {row['engine_only_s']:.2f} | "
            f"{row['plan_s'] - row['sdk_imports_s'] - row['engine_only_s']:.2f} |"
        )
    lines += [
        "",
        f"From {first['services']} to {last['services']} services the plan grows by "
        f"{slope * 1000:.1f} ms per resource.",
        "",
        "Run it again with `.venv/bin/python bench/plan/run.py`; README.md says where the time "
        "goes.",
        "",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
