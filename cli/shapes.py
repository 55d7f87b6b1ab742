"""`fermion shapes`: the shape catalog, for people and for scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from fermion.cli.console import out, print_json, usd
from fermion.environments.errors import UnknownGpuError

if TYPE_CHECKING:
    from fermion.environments.shapes import Shape, ShapeCatalog


def shapes(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the catalog as JSON, for scripts.")
    ] = False,
    gpu: Annotated[
        str | None,
        typer.Option(help="Only shapes of this GPU, e.g. a10, l4, a100, h100 (any case)."),
    ] = None,
) -> None:
    """List the resource shapes that services and node pools can ask for, with prices."""
    from fermion.environments.shapes import load_shapes

    catalog = load_shapes()
    chosen = [s for s in catalog if gpu is None or s.has_gpu(gpu)]
    if not chosen:
        families = sorted({s.family for s in catalog if s.gpu is not None and s.family})
        raise UnknownGpuError(gpu or "", families)
    if as_json:
        print_json(catalog_json(catalog, chosen))
        return
    _table(catalog, chosen)


def catalog_json(catalog: ShapeCatalog, chosen: list[Shape]) -> dict[str, Any]:
    """The machine form of the catalog (`fermion shapes --json`)."""
    return {
        "prices": {
            "region": catalog.prices.region,
            "read_on": catalog.prices.read_on.isoformat(),
            "currency": catalog.prices.currency,
            "source": catalog.prices.source,
        },
        "shapes": [
            {
                "name": s.name,
                "description": s.description,
                "gpu": None
                if s.gpu is None
                else {"model": s.gpu.model, "count": s.gpu.count, "memory_gib": s.gpu.memory_gib},
                "vcpu": s.vcpu,
                "memory_gib": s.memory_gib,
                "pod": {"cpu_millicores": s.pod_millicores, "memory_mib": s.pod_memory_mib},
                "replicas_per_node": s.replicas_per_node,
                "usd_per_hour": round(s.usd_per_hour, 5),
                "instance_types": [
                    {
                        "name": it.name,
                        "vcpu": it.vcpu,
                        "memory_gib": it.memory_gib,
                        "gpu_count": it.gpu_count,
                        "usd_per_hour": it.usd_per_hour,
                    }
                    for it in s.instance_types
                ],
            }
            for s in chosen
        ],
    }


def _table(catalog: ShapeCatalog, chosen: list[Shape]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("shape", style="bold", no_wrap=True)
    table.add_column("GPUs", no_wrap=True)
    table.add_column("pod CPU", justify="right", no_wrap=True)
    table.add_column("pod GiB", justify="right", no_wrap=True, min_width=7)
    table.add_column("node", no_wrap=True)
    table.add_column("$/h", justify="right", no_wrap=True)
    for s in chosen:
        gpus = "-" if s.gpu is None else f"{s.gpu.count} {s.gpu.model} {s.gpu.memory_gib}GB"
        node = s.primary.name
        if s.replicas_per_node > 1:
            node += f" (1/{s.replicas_per_node})"
        elif len(s.instance_types) > 1:
            node += f" +{len(s.instance_types) - 1}"
        table.add_row(
            s.name,
            gpus,
            f"{s.pod_millicores / 1000:.2f}",
            f"{s.pod_memory_mib / 1024:.1f}",
            node,
            usd(s.usd_per_hour),
        )
    out.print(table)
    p = catalog.prices
    out.print(
        f"$/h is the on-demand price of one replica in {p.region} ({p.currency}, read "
        f"{p.read_on}).\n'pod' is what a replica can request; 'node' is the preferred instance "
        "type (+N more, or the share of a node). `--json` gives every detail."
    )
