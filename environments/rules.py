"""The rules that span fields of an environment: min <= max, shapes exist, node pools can hold
their services, CIDRs do not overlap, names are unique. Each problem carries its key path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from fermion.environments.errors import SpecProblem
from fermion.environments.formats import acm_certificate_region, parse_tensor_spec
from fermion.environments.sections import (
    ClusterSpec,
    ModelCacheSpec,
    NetworkSpec,
    NodePoolSpec,
    ServiceSpec,
    TenantSpec,
)
from fermion.environments.shapes import ShapeCatalog, image_for
from fermion.environments.tenancy import check_tenants


class Environment(Protocol):
    """The sections the rules read: an EnvironmentSpec while it is being built."""

    @property
    def region(self) -> str: ...
    @property
    def network(self) -> NetworkSpec: ...
    @property
    def cluster(self) -> ClusterSpec: ...
    @property
    def node_pools(self) -> list[NodePoolSpec]: ...
    @property
    def services(self) -> list[ServiceSpec]: ...
    @property
    def tenants(self) -> list[TenantSpec]: ...
    @property
    def model_cache(self) -> ModelCacheSpec: ...


def _dupes(names: Iterable[str]) -> set[str]:
    return {name for name, count in Counter(names).items() if count > 1}


def _unique_names(section: str, names: list[str]) -> list[SpecProblem]:
    """A problem for each entry of a list section whose name an earlier entry already has."""
    seen: set[str] = set()
    problems = []
    for i, name in enumerate(names):
        if name in seen:
            problems.append(
                SpecProblem(
                    f"{section}[{i}].name",
                    f"names in {section} must be unique",
                    repr(name),
                    "Rename one of them",
                )
            )
        seen.add(name)
    return problems


def _check_size(path: str, low: int, high: int, desired: int | None) -> list[SpecProblem]:
    problems = []
    if low > high:
        problems.append(
            SpecProblem(
                f"{path}.max",
                f"max must be at least min ({low})",
                str(high),
                f"Set max to {low} or more, or lower min",
            )
        )
    if desired is not None and not low <= desired <= high:
        problems.append(
            SpecProblem(
                f"{path}.desired",
                f"desired must lie between min ({low}) and max ({high})",
                str(desired),
                "Change desired, or leave it out to start at min",
            )
        )
    return problems


def _check_shape(path: str, name: str, shapes: ShapeCatalog) -> SpecProblem | None:
    if name in shapes:
        return None
    suggestion = shapes.suggest(name)
    hint = f"Did you mean {suggestion!r}? " if suggestion else ""
    return SpecProblem(
        path,
        "unknown shape",
        repr(name),
        f"{hint}Run `fermion shapes` to list the {len(shapes)} shapes",
    )


def _check_network(spec: Environment) -> list[SpecProblem]:
    net = spec.network
    problems: list[SpecProblem] = []
    if not net.cidr.is_private:
        problems.append(
            SpecProblem(
                "network.cidr",
                "the VPC CIDR must be a private range",
                str(net.cidr),
                "Use a block in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
            )
        )
    if not 16 <= net.cidr.prefixlen <= 24:
        problems.append(
            SpecProblem(
                "network.cidr",
                "a VPC CIDR must be between /16 and /24",
                str(net.cidr),
                "Pick a prefix length from 16 to 24",
            )
        )
    subnets = 2 * net.availability_zones  # one public and one private per zone
    room = net.subnet_prefix_length - net.cidr.prefixlen
    if room < 0 or 2**room < subnets:
        problems.append(
            SpecProblem(
                "network.subnet_prefix_length",
                f"{subnets} subnets of this size do not fit in {net.cidr}",
                f"/{net.subnet_prefix_length}",
                f"Use a prefix length of at least "
                f"{net.cidr.prefixlen + (subnets - 1).bit_length()}, "
                "a larger VPC CIDR, or fewer availability_zones",
            )
        )
    if net.vpc_id is None and (net.private_subnet_ids or net.public_subnet_ids):
        problems.append(
            SpecProblem(
                "network.private_subnet_ids",
                "subnet ids only apply to an existing VPC",
                None,
                "Set network.vpc_id too, or remove the subnet ids",
            )
        )
    if net.vpc_id is not None and len(net.private_subnet_ids) < 2:
        problems.append(
            SpecProblem(
                "network.private_subnet_ids",
                "an existing VPC needs at least two private subnets in "
                "different zones (EKS requires two)",
                str(len(net.private_subnet_ids)),
                "List the private subnet ids to use",
            )
        )
    for field, ids in (
        ("private_subnet_ids", net.private_subnet_ids),
        ("public_subnet_ids", net.public_subnet_ids),
    ):
        for dup in sorted(_dupes(ids)):
            problems.append(
                SpecProblem(f"network.{field}", "subnet listed twice", dup, "List each subnet once")
            )
    if net.nat == "none":
        missing = [e for e in ("ecr.api", "ecr.dkr", "sts") if e not in net.interface_endpoints]
        if missing:
            problems.append(
                SpecProblem(
                    "network.interface_endpoints",
                    "with nat: none, private nodes reach ECR and STS only through "
                    f"interface endpoints, and {', '.join(missing)} are missing",
                    None,
                    "Add them, or set nat to single or per_az",
                )
            )
    cluster = spec.cluster
    if cluster.service_cidr.overlaps(net.cidr):
        problems.append(
            SpecProblem(
                "cluster.service_cidr",
                f"overlaps the VPC CIDR {net.cidr}",
                str(cluster.service_cidr),
                "Pick a block that does not overlap, such as 172.20.0.0/16",
            )
        )
    if not cluster.service_cidr.is_private or not 12 <= cluster.service_cidr.prefixlen <= 24:
        problems.append(
            SpecProblem(
                "cluster.service_cidr",
                "EKS needs a private block between /12 and /24",
                str(cluster.service_cidr),
                "Use a block such as 172.20.0.0/16",
            )
        )
    if cluster.endpoint_public and not cluster.public_access_cidrs:
        problems.append(
            SpecProblem(
                "cluster.public_access_cidrs",
                "a public endpoint needs the CIDRs that may reach it",
                "[]",
                "List your office or VPN ranges (0.0.0.0/0 opens it to the "
                "internet and must be written out)",
            )
        )
    if not cluster.endpoint_public and cluster.public_access_cidrs:
        problems.append(
            SpecProblem(
                "cluster.public_access_cidrs",
                "CIDRs are set but the endpoint is private",
                None,
                "Set cluster.endpoint_public: true, or remove the CIDRs",
            )
        )
    for i, block in enumerate(cluster.public_access_cidrs):
        for j in range(i):
            if block.overlaps(cluster.public_access_cidrs[j]):
                problems.append(
                    SpecProblem(
                        f"cluster.public_access_cidrs[{i}]",
                        f"overlaps public_access_cidrs[{j}] ({cluster.public_access_cidrs[j]})",
                        str(block),
                        "Merge or remove one of them",
                    )
                )
    for dup in sorted(_dupes(cluster.admin_arns)):
        problems.append(
            SpecProblem(
                "cluster.admin_arns", "principal listed twice", dup, "List each principal once"
            )
        )
    return problems


def _check_workloads(spec: Environment, shapes: ShapeCatalog) -> list[SpecProblem]:
    problems: list[SpecProblem] = []
    system = spec.cluster.system_nodes
    problem = _check_shape("cluster.system_nodes.shape", system.shape, shapes)
    if problem is not None:
        problems.append(problem)
    elif shapes.get(system.shape).is_gpu:
        problems.append(
            SpecProblem(
                "cluster.system_nodes.shape",
                "system nodes run cluster add-ons and must be a CPU shape",
                repr(system.shape),
                "Use cpu.medium or cpu.large",
            )
        )
    problems += _check_size(
        "cluster.system_nodes.size", system.size.min, system.size.max, system.size.desired
    )
    if system.size.min < 1:
        problems.append(
            SpecProblem(
                "cluster.system_nodes.size.min",
                "the system node group needs at least one node",
                str(system.size.min),
                "Set min to 1 or more (2 keeps add-ons up while a node is replaced)",
            )
        )

    problems += _unique_names("node_pools", [p.name for p in spec.node_pools])
    for i, pool in enumerate(spec.node_pools):
        path = f"node_pools[{i}]"
        problem = _check_shape(f"{path}.shape", pool.shape, shapes)
        if problem is not None:
            problems.append(problem)
        problems += _check_size(f"{path}.size", pool.size.min, pool.size.max, pool.size.desired)

    problems += _unique_names("services", [s.name for s in spec.services])
    # Only shapes the catalog knows are offered; an unknown pool shape has its own problem.
    pool_shapes = {p.shape for p in spec.node_pools if p.shape in shapes}
    for i, svc in enumerate(spec.services):
        path = f"services[{i}]"
        problem = _check_shape(f"{path}.shape", svc.shape, shapes)
        if problem is not None:
            problems.append(problem)
        elif svc.shape not in pool_shapes:
            offered = ", ".join(sorted(pool_shapes)) if pool_shapes else "none"
            problems.append(
                SpecProblem(
                    f"{path}.shape",
                    "no node pool has this shape",
                    repr(svc.shape),
                    f"Add a node pool with shape {svc.shape}, or use a shape a pool "
                    f"has (pools offer: {offered})",
                )
            )
        else:
            image = image_for(svc.image, shapes.get(svc.shape))
            if shapes.get(svc.shape).is_gpu and image == "torch-cpu":
                problems.append(
                    SpecProblem(
                        f"{path}.image",
                        "a GPU shape needs a CUDA image",
                        repr(image),
                        "Use torch-cuda12, or leave image out",
                    )
                )
            if shapes.get(svc.shape).is_gpu and svc.precision == "int8":
                problems.append(
                    SpecProblem(
                        f"{path}.precision",
                        "int8 (dynamic quantization) runs on the CPU only, and this shape has GPUs",
                        "'int8'",
                        "Use a cpu.* shape for int8, or fp16/bf16 on a GPU shape",
                    )
                )
            if not shapes.get(svc.shape).is_gpu and image == "torch-cuda12":
                problems.append(
                    SpecProblem(
                        f"{path}.image",
                        "a CPU shape cannot use the CUDA image",
                        repr(image),
                        "Use torch-cpu, or leave image out",
                    )
                )
        if svc.replicas.min > svc.replicas.max:
            problems.append(
                SpecProblem(
                    f"{path}.replicas.max",
                    f"max must be at least min ({svc.replicas.min})",
                    str(svc.replicas.max),
                    f"Set max to {svc.replicas.min} or more, or lower min",
                )
            )
        if svc.model.format == "torchscript" and not svc.inputs:
            problems.append(
                SpecProblem(
                    f"{path}.inputs",
                    "a TorchScript model does not declare its inputs, so the server cannot "
                    "check requests or warm the model up without them",
                    "[]",
                    "List each input as NAME:DTYPE:SHAPE, "
                    "e.g. inputs: [input__0:FP32:-1,3,224,224]",
                )
            )
        if (svc.model.format == "handler") != (svc.model.handler is not None):
            problems.append(
                SpecProblem(
                    f"{path}.model.handler",
                    "a handler is named exactly when format is handler",
                    repr(svc.model.handler),
                    "Set format: handler with handler: FILE.py:CLASS, or drop handler",
                )
            )
        names = [parse_tensor_spec(t).name for t in svc.inputs]
        for dup in sorted(_dupes(names)):
            problems.append(
                SpecProblem(
                    f"{path}.inputs",
                    "input tensor named twice",
                    dup,
                    "Give each input a distinct name",
                )
            )

        problems += _check_serving(spec, path, svc)

    problems += _check_capacity(spec, shapes)
    return problems


def _check_serving(spec: Environment, path: str, svc: ServiceSpec) -> list[SpecProblem]:
    """How a service is scaled and reached must be something the cluster can do."""
    problems: list[SpecProblem] = []
    if svc.autoscaling.metric == "queue_depth":
        problems.append(
            SpecProblem(
                f"{path}.autoscaling.metric",
                "queue_depth needs a Prometheus in the cluster, which fermion does not install",
                "'queue_depth'",
                "Use in_flight (requests being handled per replica) or rps",
            )
        )
    if svc.public:
        problems += _check_public(spec, path, svc)
    else:
        for key, value in (
            ("hostname", svc.hostname),
            ("certificate_arn", svc.certificate_arn),
            ("allowed_cidrs", [str(block) for block in svc.allowed_cidrs] or None),
        ):
            if value is not None:
                problems.append(
                    SpecProblem(
                        f"{path}.{key}",
                        "only a public service has a hostname, certificate or allowed CIDRs",
                        repr(value),
                        f"Set public: true to serve it over HTTPS, or remove {key}",
                    )
                )
    return problems


def _check_public(spec: Environment, path: str, svc: ServiceSpec) -> list[SpecProblem]:
    """A public service is served over TLS, for its own hostname, and checks tokens."""
    problems: list[SpecProblem] = []
    if not spec.cluster.load_balancer_controller:
        problems.append(
            SpecProblem(
                f"{path}.public",
                "a public service needs the AWS Load Balancer Controller for its load balancer",
                "true",
                "Set cluster.load_balancer_controller: true, or make the service private",
            )
        )
    if svc.hostname is None:
        problems.append(
            SpecProblem(
                f"{path}.hostname",
                "a public service is served over TLS only, for a DNS name its certificate covers",
                None,
                "Set hostname (e.g. embed.ml.example.com) and certificate_arn, or make the "
                "service private",
            )
        )
    if svc.certificate_arn is None:
        problems.append(
            SpecProblem(
                f"{path}.certificate_arn",
                "a public service is served over TLS only, which needs an ACM certificate",
                None,
                "Set certificate_arn to an ACM certificate for the hostname (aws acm "
                "request-certificate), or make the service private",
            )
        )
    elif acm_certificate_region(svc.certificate_arn) != spec.region:
        problems.append(
            SpecProblem(
                f"{path}.certificate_arn",
                f"the load balancer can only use a certificate from its own region ({spec.region})",
                repr(acm_certificate_region(svc.certificate_arn)),
                f"Request or import the certificate in {spec.region}",
            )
        )
    if svc.auth == "none":
        problems.append(
            SpecProblem(
                f"{path}.auth",
                "a public service must check bearer tokens",
                "'none'",
                "Remove auth (tokens are the default), or make the service private",
            )
        )
    return problems


def _check_capacity(spec: Environment, shapes: ShapeCatalog) -> list[SpecProblem]:
    """Services on a shape must fit in the pools of that shape at their maximum scale."""
    problems: list[SpecProblem] = []
    for shape_name in sorted({p.shape for p in spec.node_pools if p.shape in shapes}):
        shape = shapes.get(shape_name)
        pools = [(i, p) for i, p in enumerate(spec.node_pools) if p.shape == shape_name]
        capacity = sum(p.size.max for _, p in pools) * shape.replicas_per_node
        demand = sum(s.replicas.max for s in spec.services if s.shape == shape_name)
        if demand > capacity:
            first, _ = pools[0]
            need = -(-demand // shape.replicas_per_node)
            problems.append(
                SpecProblem(
                    f"node_pools[{first}].size.max",
                    f"services on {shape_name} can scale to {demand} replicas, but its "
                    f"pools hold at most {capacity}",
                    str(spec.node_pools[first].size.max),
                    f"Let the {shape_name} pools reach {need} nodes in all, or lower "
                    "the services' replicas.max",
                )
            )
    return problems


# The share of a node's disk the model cache may take: the rest holds the OS and images.
MODEL_CACHE_DISK_SHARE = 0.5


def _check_model_cache(spec: Environment) -> list[SpecProblem]:
    """A cache that is on has services to serve, and fits on the disk of every node it runs on
    (its pod runs on each node, GPU pools included)."""
    cache = spec.model_cache
    if not cache.enabled:
        return []
    problems: list[SpecProblem] = []
    if not spec.services:
        problems.append(
            SpecProblem(
                "model_cache.enabled",
                "the cache runs from the services' runtime image and serves their models, and "
                "this environment has no services",
                "true",
                "Add a service, or set model_cache.enabled: false",
            )
        )
    for i, pool in enumerate(spec.node_pools):
        room = int(pool.disk_gib * MODEL_CACHE_DISK_SHARE)
        if cache.size_gib > room:
            problems.append(
                SpecProblem(
                    "model_cache.size_gib",
                    f"node pool {pool.name!r} has {pool.disk_gib} GiB disks, and the cache may "
                    f"take at most half of a node's disk ({room} GiB)",
                    str(cache.size_gib),
                    f"Lower model_cache.size_gib to {room} or less, or raise "
                    f"node_pools[{i}].disk_gib to {cache.size_gib * 2} or more",
                )
            )
    return problems


def check_environment(spec: Environment, shapes: ShapeCatalog) -> list[SpecProblem]:
    """Every cross-field problem in `spec`, each with its key path; empty when it is valid."""
    return (
        _check_network(spec)
        + _check_workloads(spec, shapes)
        + check_tenants(spec.tenants, spec.services, shapes)
        + _check_model_cache(spec)
    )
