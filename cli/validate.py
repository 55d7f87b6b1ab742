"""`fermion validate [ENV]`: read an environment, check every rule, and summarise it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from fermion.cli.console import err, out, print_json
from fermion.cli.options import StacksDir, stacks_folder

if TYPE_CHECKING:
    from fermion.environments.spec import EnvironmentSpec


def validate(
    env: Annotated[
        str | None,
        typer.Argument(
            help="Environment name: reads Pulumi.<ENV>.yaml. Left out: checks every environment.",
            show_default=False,
        ),
    ] = None,
    stacks_dir: StacksDir = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the checked spec, defaults filled in, as JSON.")
    ] = False,
) -> None:
    """Check an environment file against every rule, and summarise what it declares."""
    from fermion.environments.stack_files import read_stack_file, stack_file

    folder = stacks_folder(stacks_dir)
    if env is None:
        _validate_all(folder, as_json)
        return
    path = stack_file(env, folder)
    spec = read_stack_file(path, env)
    _check_waivers(spec)
    if as_json:
        print_json({"file": str(path), "environment": spec.model_dump(mode="json")})
        return
    _summary(spec, path)


def _validate_all(folder: Path, as_json: bool) -> None:
    from fermion.environments.errors import EnvironmentNotFoundError, FermionError
    from fermion.environments.stack_files import list_environments, read_stack_file, stack_file

    envs = list_environments(folder)
    if not envs:
        raise EnvironmentNotFoundError("*", folder, [])
    results = []
    for name in envs:
        path = stack_file(name, folder)
        try:
            _check_waivers(read_stack_file(path, name))
        except FermionError as exc:
            results.append(
                {"environment": name, "file": str(path), "valid": False, "error": str(exc)}
            )
            if not as_json:
                out.print(f"[bold red]✗[/] {name} ({path})")
                err.print(escape(str(exc)))
            continue
        results.append({"environment": name, "file": str(path), "valid": True, "error": None})
        if not as_json:
            out.print(f"[bold green]✓[/] {name} ({path})")
    if as_json:
        print_json(results)
    if not all(r["valid"] for r in results):
        raise typer.Exit(1)


def _check_waivers(spec: EnvironmentSpec) -> None:
    # The environment layer cannot see the policy pack; which waivers it allows is checked here.
    from fermion.policies import check_waivers

    check_waivers(spec.policy_waivers)


def _model_cache(spec: EnvironmentSpec) -> str:
    cache = spec.model_cache
    if not cache.enabled:
        return "off (docs/models.md)"
    return f"on, {cache.size_gib} GiB of each service node's disk (an emptyDir)"


def _summary(spec: EnvironmentSpec, path: Path) -> None:
    from rich.table import Table

    net, cluster = spec.network, spec.cluster
    out.print(f"[bold green]✓[/] environment [bold]{spec.name}[/] is valid ({path})")
    endpoint = (
        f"public to {', '.join(str(c) for c in cluster.public_access_cidrs)}"
        if cluster.endpoint_public
        else "private"
    )
    vpc = f"existing {net.vpc_id}" if net.vpc_id else f"{net.cidr}, {net.availability_zones} zones"
    endpoints = ", ".join(net.interface_endpoints) if net.interface_endpoints else "none"
    system = cluster.system_nodes
    lines = [
        ("region", spec.region),
        ("network", f"{vpc}, NAT {net.nat.replace('_', ' ')}"),
        ("endpoints", f"interface: {endpoints}; flow logs {'on' if net.flow_logs else 'off'}"),
        ("cluster", f"{spec.cluster_name}, EKS {cluster.version}, endpoint {endpoint}"),
        ("system nodes", f"{system.shape} x {system.size.min}-{system.size.max}"),
        ("models bucket", spec.storage.bucket or "named by Pulumi at creation"),
        ("registry", f"ECR {spec.registry.repository}"),
        ("model cache", _model_cache(spec)),
    ]
    for key, value in lines:
        out.print(f"  [dim]{key:<14}[/] {value}")

    if spec.node_pools:
        pools = Table(title="node pools", title_justify="left")
        for column in ("name", "shape", "capacity", "nodes", "AMI", "disk GiB"):
            pools.add_column(column)
        for p in spec.node_pools:
            pools.add_row(
                p.name,
                p.shape,
                p.capacity.replace("_", "-"),
                f"{p.size.min}-{p.size.max}",
                p.ami,
                str(p.disk_gib),
            )
        out.print(pools)
    tenants = Table(
        title="tenants" if spec.tenants else "tenants (none declared: one implicit tenant)",
        title_justify="left",
    )
    for column in ("name", "namespace", "GPUs", "CPU cores", "memory GiB", "pods"):
        tenants.add_column(column)
    for t in spec.tenants_in_effect:
        q = t.quota
        tenants.add_row(
            t.name,
            t.namespace_name,
            str(q.gpus),
            f"{q.cpu:g}",
            f"{q.memory_gib:.4g}",
            str(q.pods),
        )
    out.print(tenants)
    if spec.services:
        services = Table(title="services", title_justify="left")
        for column in ("name", "shape", "replicas", "batch", "autoscale on", "model", "access"):
            services.add_column(column, no_wrap=column in ("name", "shape"))
        for s in spec.services:
            model = f"{s.model.format} v{s.model.version}"
            if s.model.uri is not None:
                model = f"{s.model.format} {s.model.uri}"
            access = "bearer token" if s.auth == "token" else "no token"
            access += f"\n[dim]https://{s.hostname}[/]" if s.public else "\n[dim]in-cluster[/]"
            services.add_row(
                f"{s.name}\n[dim]{spec.namespace_of(s)}[/]",
                f"{s.shape}\n[dim]{spec.image_for(s)}[/]",
                f"{s.replicas.min}-{s.replicas.max}",
                f"{s.batching.max_batch_size} / {s.batching.max_delay_ms:g} ms",
                f"{s.autoscaling.metric} {s.autoscaling.target:g}",
                model,
                access,
            )
        out.print(services)
    else:
        out.print("  no services yet: add one under `services:`")
