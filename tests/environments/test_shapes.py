from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from fermion.environments import ShapeCatalogError, UnknownShapeError, load_shapes
from fermion.environments.shapes import DEFAULT_CATALOG, parse_catalog

LEPTON_NAMES = [
    "cpu.small", "cpu.medium", "cpu.large", "gpu.t4", "gpu.a10", "gpu.l4", "gpu.l40s",
    "gpu.a100-40gb", "gpu.a100-80gb", "gpu.h100-sxm",
]  # fmt: skip


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CATALOG.read_text())
    return data


def test_catalog_has_every_lepton_shape_and_multi_gpu_forms() -> None:
    catalog = load_shapes()
    for name in LEPTON_NAMES:
        assert name in catalog
    for family in ("t4", "a10", "l4", "l40s", "a100-40gb", "a100-80gb", "h100-sxm"):
        assert f"gpu.8x{family}" in catalog, family
        assert f"gpu.4x{family}" in catalog, family
    # AWS sells A100 and H100 only in 8-GPU nodes, which 2-GPU replicas can share.
    for family in ("a100-40gb", "a100-80gb", "h100-sxm"):
        assert f"gpu.2x{family}" in catalog


def test_every_instance_type_a_shape_names_is_priced(raw: dict[str, Any]) -> None:
    priced = raw["instance_types"]
    for name, shape in raw["shapes"].items():
        for it in shape["instance_types"]:
            assert it in priced, f"{name} uses {it}, which has no price"
            assert priced[it]["usd_per_hour"] > 0


def test_every_priced_instance_type_is_used(raw: dict[str, Any]) -> None:
    used = {it for shape in raw["shapes"].values() for it in shape["instance_types"]}
    assert set(raw["instance_types"]) == used


def test_gpu_counts_are_consistent() -> None:
    catalog = load_shapes()
    for shape in catalog:
        match = re.match(r"gpu\.(?:(\d)x)?", shape.name)
        if shape.name.startswith("cpu."):
            assert shape.gpu is None
            assert all(it.gpu is None for it in shape.instance_types)
            continue
        assert match is not None and shape.gpu is not None
        assert shape.gpu.count == int(match.group(1) or 1)
        for it in shape.instance_types:
            assert it.gpu is not None
            assert it.gpu.model == shape.gpu.model
            assert it.gpu.memory_gib == shape.gpu.memory_gib
            assert it.gpu.count % shape.gpu.count == 0
            assert it.gpu.count // shape.gpu.count == shape.replicas_per_node


def test_prices_carry_region_and_date() -> None:
    prices = load_shapes().prices
    assert prices.region == "us-east-1"
    assert prices.read_on.year >= 2025
    assert prices.currency == "USD"
    platform = load_shapes().platform
    assert platform.eks_cluster == 0.10
    assert 0 < platform.interface_endpoint_per_zone < platform.nat_gateway


def test_a_slice_costs_its_share_of_the_node() -> None:
    catalog = load_shapes()
    node = catalog.instance_types["p5.48xlarge"]
    assert catalog.get("gpu.h100-sxm").usd_per_hour == pytest.approx(node.usd_per_hour / 8)
    assert catalog.get("gpu.8xh100-sxm").usd_per_hour == pytest.approx(node.usd_per_hour)
    assert catalog.get("gpu.4xh100-sxm").vcpu == node.vcpu / 2


def test_pod_gets_the_allocatable_share() -> None:
    catalog = load_shapes()
    # m7i.large: 2 vCPU; kube-reserved 60m + 10m, DaemonSets 250m.
    small = catalog.get("cpu.small")
    assert small.pod_millicores == 2000 - 70 - 250
    # 8 GiB less 255 + 11*110 MiB kube-reserved, 100 MiB eviction, 512 MiB DaemonSets.
    assert small.pod_memory_mib == 8192 - 1465 - 100 - 512
    # 96 vCPU: 60 + 10 + 2*5 + 92*2.5 = 310m reserved, then an eighth of what is left.
    a100 = catalog.get("gpu.a100-40gb")
    assert a100.pod_millicores == int((96000 - 310 - 250) / 8)
    for shape in catalog:
        assert 0 < shape.pod_millicores < shape.vcpu * 1000
        assert 0 < shape.pod_memory_mib < shape.memory_gib * 1024


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a10", {"gpu.a10", "gpu.4xa10", "gpu.8xa10"}),
        ("A10G", {"gpu.a10", "gpu.4xa10", "gpu.8xa10"}),
        ("l4", {"gpu.l4", "gpu.4xl4", "gpu.8xl4"}),
        ("h100", {"gpu.h100-sxm", "gpu.2xh100-sxm", "gpu.4xh100-sxm", "gpu.8xh100-sxm"}),
        ("a100-80gb", {"gpu.a100-80gb", "gpu.2xa100-80gb", "gpu.4xa100-80gb", "gpu.8xa100-80gb"}),
        ("v100", set()),
    ],
)
def test_gpu_query(query: str, expected: set[str]) -> None:
    assert {s.name for s in load_shapes() if s.has_gpu(query)} == expected


def test_unknown_shape_suggests_the_nearest() -> None:
    with pytest.raises(UnknownShapeError, match=r"Did you mean 'gpu.a10'"):
        load_shapes().get("gpu.a01")


def _minimal(**shape: Any) -> dict[str, Any]:
    return {
        "prices": {
            "region": "us-east-1",
            "read_on": "2026-01-01",
            "currency": "USD",
            "source": "x",
        },
        "platform": {"eks_cluster": 0.1, "nat_gateway": 0.045, "interface_endpoint_per_zone": 0.01},
        "instance_types": {
            "g5.xlarge": {
                "vcpu": 4,
                "memory_gib": 16,
                "usd_per_hour": 1.0,
                "gpu": {"model": "A10G", "count": 1, "memory_gib": 24},
            },
            "g5.12xlarge": {
                "vcpu": 48,
                "memory_gib": 192,
                "usd_per_hour": 5.0,
                "gpu": {"model": "A10G", "count": 4, "memory_gib": 24},
            },
            "m7i.large": {"vcpu": 2, "memory_gib": 8, "usd_per_hour": 0.1},
        },
        "shapes": shape,
    }


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"gpu.a10": {"description": "", "instance_types": ["g5.nano"], "gpus": 1}}, "no price"),
        ({"gpu.a10": {"description": "", "instance_types": ["g5.xlarge"], "gpus": 2}}, "gpus: 1"),
        ({"gpu.3xa10": {"description": "", "instance_types": ["g5.12xlarge"], "gpus": 3}}, "form"),
        (
            {"gpu.8xa10": {"description": "", "instance_types": ["g5.12xlarge"], "gpus": 8}},
            "divide",
        ),
        ({"cpu.small": {"description": "", "instance_types": ["g5.xlarge"]}}, "must not have GPUs"),
        (
            {
                "gpu.a10": {
                    "description": "",
                    "instance_types": ["g5.xlarge", "g5.12xlarge"],
                    "gpus": 1,
                }
            },
            "mixes",
        ),
        ({"gpu.a10": {"description": "", "instance_types": [], "gpus": 1}}, "instance_types"),
        (
            {
                "gpu.a10": {
                    "description": "",
                    "instance_types": ["g5.xlarge"],
                    "gpus": 1,
                    "colour": 1,
                }
            },
            "colour",
        ),
    ],
)
def test_malformed_catalog_is_rejected(shapes: dict[str, Any], message: str) -> None:
    with pytest.raises(ShapeCatalogError, match=message):
        parse_catalog(_minimal(**shapes), "test.yaml")


def test_a_minimal_catalog_loads_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "shapes.yaml"
    data = _minimal(
        **{"gpu.a10": {"description": "one", "instance_types": ["g5.xlarge"], "gpus": 1}}
    )
    path.write_text(yaml.safe_dump(data))
    catalog = load_shapes(path)
    assert catalog.names() == ["gpu.a10"]


def test_unreadable_catalog_is_a_fermion_error(tmp_path: Path) -> None:
    with pytest.raises(ShapeCatalogError, match="cannot be read"):
        load_shapes(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("shapes: [unclosed")
    with pytest.raises(ShapeCatalogError, match="not valid YAML"):
        load_shapes(bad)
