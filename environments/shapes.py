"""The shape catalog: Lepton-style resource shapes, the AWS instance types that carry them, prices.

The data lives in `shapes.yaml` beside this module; `load_shapes()` reads and checks it and
returns a `ShapeCatalog` of frozen records.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from fermion.environments.errors import ShapeCatalogError, UnknownShapeError

DEFAULT_CATALOG = Path(__file__).with_name("shapes.yaml")

# EKS reserves resources on every node for the kubelet and the OS (the EKS AMI's formula), plus
# an eviction threshold. Fermion's clusters cap pods per node at 110 (prefix delegation), and its
# DaemonSets (CNI, kube-proxy, pod identity, device plugin, DCGM exporter) need the reserve below.
MAX_PODS_PER_NODE = 110
EVICTION_HARD_MIB = 100
DAEMONSET_RESERVE_MILLICORES = 250
DAEMONSET_RESERVE_MIB = 512

_SHAPE_NAME = re.compile(
    r"^(?:cpu\.[a-z]+|gpu\.(?:(?P<count>[248])x)?(?P<family>[a-z][a-z0-9]*(?:-[a-z0-9]+)*))$"
)


@dataclass(frozen=True)
class Gpu:
    """The GPUs of an instance type or a shape."""

    model: str
    count: int
    memory_gib: int


@dataclass(frozen=True)
class InstanceType:
    """An EC2 instance type with its capacity and on-demand price."""

    name: str
    vcpu: int
    memory_gib: int
    usd_per_hour: float
    gpu: Gpu | None

    @property
    def gpu_count(self) -> int:
        return 0 if self.gpu is None else self.gpu.count

    @property
    def allocatable_millicores(self) -> int:
        """CPU left for pods after the kubelet, OS and fermion's DaemonSets take theirs."""
        return (
            self.vcpu * 1000 - _kube_reserved_millicores(self.vcpu) - DAEMONSET_RESERVE_MILLICORES
        )

    @property
    def allocatable_mib(self) -> int:
        """Memory left for pods after the kubelet, eviction threshold and DaemonSets."""
        reserved = 255 + 11 * MAX_PODS_PER_NODE + EVICTION_HARD_MIB + DAEMONSET_RESERVE_MIB
        return self.memory_gib * 1024 - reserved


@dataclass(frozen=True)
class Shape:
    """A resource shape: what one replica gets, and the instance types that can host it.

    `instance_types` is ordered by preference; the first is the one a node pool prefers and the
    one prices are quoted for. Pod requests are sized to fit the smallest of them.
    """

    name: str
    description: str
    instance_types: tuple[InstanceType, ...]
    gpu: Gpu | None

    @property
    def is_gpu(self) -> bool:
        return self.gpu is not None

    @property
    def gpu_count(self) -> int:
        return 0 if self.gpu is None else self.gpu.count

    @property
    def family(self) -> str | None:
        """The GPU family in the name: `a10` for gpu.4xa10, `a100-80gb` for gpu.a100-80gb."""
        match = _SHAPE_NAME.match(self.name)
        return None if match is None else match.group("family")

    def has_gpu(self, query: str) -> bool:
        """Whether `query` names this shape's GPU: its family (`a10`), a family's stem
        (`a100` for both A100 sizes) or the model (`A10G`), in any case."""
        if self.gpu is None or self.family is None:
            return False
        q = query.lower()
        return q in (self.family, self.gpu.model.lower()) or self.family.startswith(f"{q}-")

    @property
    def primary(self) -> InstanceType:
        return self.instance_types[0]

    @property
    def _smallest(self) -> InstanceType:
        return min(self.instance_types, key=lambda it: (it.vcpu, it.memory_gib))

    @property
    def replicas_per_node(self) -> int:
        """How many replicas of this shape fit on one node of the primary instance type."""
        if self.gpu is None:
            return 1
        return self.primary.gpu_count // self.gpu.count

    @property
    def _fraction(self) -> float:
        smallest = self._smallest
        if self.gpu is None or smallest.gpu_count == 0:
            return 1.0
        return self.gpu.count / smallest.gpu_count

    @property
    def vcpu(self) -> float:
        """vCPUs of the node that belong to one replica."""
        return self._smallest.vcpu * self._fraction

    @property
    def memory_gib(self) -> float:
        """Node memory that belongs to one replica."""
        return self._smallest.memory_gib * self._fraction

    @property
    def pod_millicores(self) -> int:
        """The CPU request a replica of this shape gets, in millicores."""
        return int(self._smallest.allocatable_millicores * self._fraction)

    @property
    def pod_memory_mib(self) -> int:
        """The memory request a replica of this shape gets, in MiB."""
        return int(self._smallest.allocatable_mib * self._fraction)

    @property
    def usd_per_hour(self) -> float:
        """The on-demand price of one replica: its share of a primary node."""
        return self.primary.usd_per_hour / self.replicas_per_node


@dataclass(frozen=True)
class PriceSource:
    """Where and when the catalog's prices were read."""

    region: str
    read_on: date
    currency: str
    source: str


@dataclass(frozen=True)
class PlatformPrices:
    """Hourly prices of what an environment pays for besides its nodes."""

    eks_cluster: float
    nat_gateway: float
    interface_endpoint_per_zone: float


@dataclass(frozen=True)
class ShapeCatalog:
    """All shapes and instance types, looked up by name, and the platform's other prices."""

    prices: PriceSource
    platform: PlatformPrices
    instance_types: Mapping[str, InstanceType]
    shapes: Mapping[str, Shape]

    def __iter__(self) -> Iterator[Shape]:
        return iter(self.shapes.values())

    def __contains__(self, name: object) -> bool:
        return name in self.shapes

    def __len__(self) -> int:
        return len(self.shapes)

    def names(self) -> list[str]:
        return list(self.shapes)

    def suggest(self, name: str) -> str | None:
        """The closest known shape name, for a did-you-mean hint."""
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
        return close[0] if close else None

    def get(self, name: str) -> Shape:
        """The shape called `name`; raises UnknownShapeError with a suggestion otherwise."""
        try:
            return self.shapes[name]
        except KeyError:
            raise UnknownShapeError(name, self.names(), self.suggest(name)) from None


def _kube_reserved_millicores(vcpu: int) -> int:
    # The EKS AMI's formula: 6% of the first core, 1% of the second, 0.5% of the next two,
    # 0.25% of every core beyond four.
    tiers = ((1, 60.0), (1, 10.0), (2, 5.0))
    left = vcpu
    reserved = 0.0
    for cores, per_core in tiers:
        used = min(left, cores)
        reserved += used * per_core
        left -= used
    reserved += left * 2.5
    return int(reserved)


class _RawGpu(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str = Field(min_length=1)
    count: PositiveInt
    memory_gib: PositiveInt


class _RawInstanceType(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    vcpu: PositiveInt
    memory_gib: PositiveInt
    usd_per_hour: PositiveFloat
    gpu: _RawGpu | None = None


class _RawShape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str
    instance_types: list[str] = Field(min_length=1)
    gpus: PositiveInt | None = None


class _RawPrices(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    region: str
    read_on: date
    currency: str
    source: str


class _RawPlatformPrices(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    eks_cluster: float = Field(ge=0)
    nat_gateway: float = Field(ge=0)
    interface_endpoint_per_zone: float = Field(ge=0)


class _RawCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    prices: _RawPrices
    platform: _RawPlatformPrices
    instance_types: dict[str, _RawInstanceType]
    shapes: dict[str, _RawShape]


def _build_shape(
    name: str, raw: _RawShape, instances: Mapping[str, InstanceType], source: str
) -> Shape:
    match = _SHAPE_NAME.match(name)
    if match is None:
        raise ShapeCatalogError(
            source, f"shape name {name!r} is not of the form cpu.<size> or gpu.[Nx]<model>"
        )
    missing = [t for t in raw.instance_types if t not in instances]
    if missing:
        raise ShapeCatalogError(
            source, f"shape {name!r} names instance types with no entry (no price): {missing}"
        )
    types = tuple(instances[t] for t in raw.instance_types)
    if name.startswith("cpu."):
        if raw.gpus is not None or any(t.gpu is not None for t in types):
            raise ShapeCatalogError(source, f"CPU shape {name!r} must not have GPUs")
        return Shape(name=name, description=raw.description, instance_types=types, gpu=None)

    expected = int(match.group("count") or 1)
    if raw.gpus != expected:
        raise ShapeCatalogError(
            source, f"shape {name!r} must have gpus: {expected} to match its name, not {raw.gpus}"
        )
    gpus = {(t.gpu.model, t.gpu.memory_gib, t.gpu.count) if t.gpu else None for t in types}
    if None in gpus or len(gpus) != 1:
        # One GPU model and count across a shape's types keeps replicas per node well defined.
        raise ShapeCatalogError(
            source, f"GPU shape {name!r} mixes instance types with different or no GPUs"
        )
    for t in types:
        if t.gpu_count % expected != 0:
            raise ShapeCatalogError(
                source,
                f"shape {name!r} takes {expected} GPUs, which does not divide the "
                f"{t.gpu_count} GPUs of {t.name}",
            )
    first_gpu = types[0].gpu
    if first_gpu is None:  # unreachable after the check above; keeps the types exact
        raise ShapeCatalogError(source, f"GPU shape {name!r} has no GPUs")
    gpu = Gpu(model=first_gpu.model, count=expected, memory_gib=first_gpu.memory_gib)
    return Shape(name=name, description=raw.description, instance_types=types, gpu=gpu)


def parse_catalog(data: Any, source: str) -> ShapeCatalog:
    """Check raw catalog data (as read from YAML) and build the catalog."""
    try:
        raw = _RawCatalog.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ShapeCatalogError(source, f"{where}: {first['msg']}") from None
    instances = {
        name: InstanceType(
            name=name,
            vcpu=it.vcpu,
            memory_gib=it.memory_gib,
            usd_per_hour=it.usd_per_hour,
            gpu=None
            if it.gpu is None
            else Gpu(model=it.gpu.model, count=it.gpu.count, memory_gib=it.gpu.memory_gib),
        )
        for name, it in raw.instance_types.items()
    }
    shapes = {name: _build_shape(name, s, instances, source) for name, s in raw.shapes.items()}
    prices = PriceSource(
        region=raw.prices.region,
        read_on=raw.prices.read_on,
        currency=raw.prices.currency,
        source=raw.prices.source,
    )
    platform = PlatformPrices(
        eks_cluster=raw.platform.eks_cluster,
        nat_gateway=raw.platform.nat_gateway,
        interface_endpoint_per_zone=raw.platform.interface_endpoint_per_zone,
    )
    return ShapeCatalog(prices=prices, platform=platform, instance_types=instances, shapes=shapes)


CPU_IMAGE = "torch-cpu"
CUDA_IMAGE = "torch-cuda12"


def image_for(chosen: str | None, shape: Shape) -> str:
    """The runtime image a replica on `shape` runs: `chosen` when given, else the CUDA image
    exactly when the shape has GPUs. Whether a service runs CUDA is decided here alone."""
    if chosen is not None:
        return chosen
    return CUDA_IMAGE if shape.is_gpu else CPU_IMAGE


def load_shapes(path: Path | None = None) -> ShapeCatalog:
    """Load the shape catalog; the one shipped with fermion unless `path` is given."""
    if path is None:
        return _default_catalog()
    return _load(path)


@cache
def _default_catalog() -> ShapeCatalog:
    return _load(DEFAULT_CATALOG)


def _load(path: Path) -> ShapeCatalog:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ShapeCatalogError(str(path), f"cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ShapeCatalogError(str(path), f"is not valid YAML ({exc})") from None
    return parse_catalog(data, str(path))
