"""The offline plan: the stack program under Pulumi's mocks, recorded as a graph with a cost."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import kubernetes_validate
import pulumi
import pytest

from fermion.environments import load_shapes
from fermion.environments.stack_files import load_environment, parse_environment
from fermion.stacks import program
from fermion.stacks.cost import CostLine, estimate_cost
from fermion.stacks.manifests import is_kubernetes_object
from fermion.stacks.plan import SECRET, UNKNOWN, Plan, PlanError, PlannedResource, plan_environment

from ..conftest import STACKS, crd_schema

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"


@pytest.fixture(scope="module")
def dev_plan() -> Plan:
    return plan_environment(load_environment("dev", STACKS))


@pytest.fixture(scope="module")
def prod_plan() -> Plan:
    return plan_environment(load_environment("prod", STACKS))


def _of_type(plan: Plan, typ: str) -> list[PlannedResource]:
    return [r for r in plan.resources if r.type == typ]


def test_the_json_document_has_exactly_the_documented_shape(dev_plan: Plan) -> None:
    document = dev_plan.to_json()
    assert list(document) == [
        "environment",
        "resources",
        "outputs",
        "cost",
        "findings",
        "assumptions",
    ]
    assert document["environment"] == "dev"
    assert document["assumptions"] == sorted(document["assumptions"])
    assert any("zones are named us-west-2a" in text for text in document["assumptions"])
    assert document["findings"] == []
    for resource in document["resources"]:
        assert list(resource) == ["urn", "type", "name", "parent", "inputs"]
        assert isinstance(resource["inputs"], dict)
    assert set(document["cost"]) == {"per_hour_min_usd", "per_hour_max_usd", "lines"}


def test_every_resource_hangs_under_the_platform(dev_plan: Plan) -> None:
    urns = {r.urn for r in dev_plan.resources}
    assert len(urns) == len(dev_plan.resources)
    top = [r for r in dev_plan.resources if r.parent is None]
    assert [(r.type, r.name) for r in top] == [("fermion:index:Platform", "dev")]
    assert all(r.parent in urns for r in dev_plan.resources if r.parent is not None)
    components = {r.type for r in dev_plan.resources if not r.custom}
    assert {
        "fermion:index:Network",
        "fermion:index:Cluster",
        "fermion:index:GpuNodePool",
        "fermion:index:ClusterAddons",
        "fermion:index:ModelStore",
        "fermion:index:ImageRegistry",
        "fermion:index:RuntimeImage",
    } <= components


def test_the_gpu_pool_gets_the_nvidia_ami_and_the_gpu_taint(dev_plan: Plan) -> None:
    groups = {r.name: r.inputs for r in _of_type(dev_plan, NODE_GROUP)}
    gpu = groups["dev-gpu-l4"]
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"} in gpu["taints"]
    assert gpu["scalingConfig"]["minSize"] == 0
    system = groups["dev-cluster-system"]
    assert system["amiType"] == "AL2023_x86_64_STANDARD"
    assert system["taints"] == [
        {"key": "CriticalAddonsOnly", "value": "true", "effect": "NO_SCHEDULE"}
    ]


def test_inputs_name_what_only_up_can_know_and_hide_secrets(dev_plan: Plan) -> None:
    cluster = _of_type(dev_plan, "aws:eks/cluster:Cluster")[0]
    # AWS's ids and ARNs are marked placeholders; what only a build or AWS knows stays unknown.
    assert cluster.inputs["roleArn"] == (
        "arn:aws:iam::(known after up: account):role/(known after up: dev-cluster-control-plane)"
    )
    assert cluster.inputs["name"] == "fermion-dev"
    assert cluster.inputs["encryptionConfig"]["resources"] == ["secrets"]
    assert dev_plan.outputs["kubeconfig"] == SECRET
    assert dev_plan.outputs["cluster_name"] == "fermion-dev"
    assert dev_plan.outputs["images"]["embed"].endswith("/fermion/runtime@sha256:" + UNKNOWN)


def test_policy_documents_read_in_full(dev_plan: Plan) -> None:
    policy = _of_type(dev_plan, "aws:s3/bucketPolicy:BucketPolicy")[0].inputs["policy"]
    deny = json.loads(policy)["Statement"][0]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert "arn:aws:s3:::(known after up: dev-models)/*" in deny["Resource"]
    reader = next(
        r
        for r in _of_type(dev_plan, "aws:iam/rolePolicy:RolePolicy")
        if r.name == "dev-embed-model"
    )
    read = json.loads(reader.inputs["policy"])["Statement"][0]
    assert read["Resource"] == ["arn:aws:s3:::(known after up: dev-models)/embed/*"]


def test_dev_has_no_policy_findings(dev_plan: Plan) -> None:
    assert dev_plan.findings == []


def test_the_plan_is_the_same_every_run(dev_plan: Plan) -> None:
    again = plan_environment(load_environment("dev", STACKS))
    assert again.to_json() == dev_plan.to_json()


def test_dev_costs_its_nodes_control_plane_and_nat_at_both_ends(dev_plan: Plan) -> None:
    shapes = load_shapes()
    system = shapes.get("cpu.medium").primary.usd_per_hour
    l4 = shapes.get("gpu.l4").primary.usd_per_hour
    fixed = shapes.platform.eks_cluster + shapes.platform.nat_gateway  # nat: single
    assert dev_plan.cost.per_hour_min_usd == pytest.approx(fixed + 1 * system, abs=1e-4)
    assert dev_plan.cost.per_hour_max_usd == pytest.approx(fixed + 2 * system + 2 * l4, abs=1e-4)


def test_prod_counts_a_nat_per_zone_and_each_endpoint_in_each_zone(prod_plan: Plan) -> None:
    items = [line.item for line in prod_plan.cost.lines]
    assert items.count("NAT gateway") == 3
    endpoints = [line for line in prod_plan.cost.lines if line.item == "interface endpoint"]
    assert len(endpoints) == 4
    assert all(line.count_min == line.count_max == 3 for line in endpoints)
    spot = [line for line in prod_plan.cost.lines if "spot" in line.detail]
    assert len(spot) == 1
    assert spot[0].note is not None and "on-demand price" in spot[0].note
    assert spot[0].count_min == 0 and spot[0].count_max == 8


def test_prod_declares_every_pool_and_service(prod_plan: Plan) -> None:
    pools = {r.name for r in _of_type(prod_plan, NODE_GROUP)}
    assert pools == {
        "prod-cluster-system",
        "prod-a10-on-demand",
        "prod-a10-spot",
        "prod-l40s",
        "prod-cpu",
    }
    images = {r.name for r in _of_type(prod_plan, "docker-build:index:Image")}
    assert images == {"prod-embed", "prod-classifier", "prod-reranker", "prod-tabular"}
    bucket = _of_type(prod_plan, "aws:s3/bucket:Bucket")
    assert "example-corp-fermion-prod-models" in {b.inputs.get("bucket") for b in bucket}


def test_each_service_runs_behind_keda_with_an_endpoint(prod_plan: Plan) -> None:
    assert prod_plan.outputs["models"]["classifier"] == (
        "s3://example-corp-fermion-prod-models/classifier/12/"
    )
    endpoints = prod_plan.outputs["endpoints"]
    assert set(endpoints) == {"embed", "classifier", "reranker", "tabular"}
    assert endpoints["embed"]["url"].endswith(":8080/v2/models/embed")
    scalers = {
        r.inputs["metadata"]["name"]: r.inputs["spec"]
        for r in _of_type(prod_plan, "kubernetes:http.keda.sh/v1alpha1:HTTPScaledObject")
        if r.inputs.get("kind") == "HTTPScaledObject"
    }
    assert scalers["reranker"]["scalingMetric"]["requestRate"]["targetValue"] == 200
    assert scalers["reranker"]["replicas"] == {"max": 4, "min": 0}
    deployments = {
        r.inputs["metadata"]["name"]: r.inputs["spec"]["template"]["spec"]
        for r in _of_type(prod_plan, "kubernetes:apps/v1:Deployment")
    }
    env = deployments["embed"]["containers"][0]["env"]
    assert {
        "name": "FERMION_MODEL_URI",
        "value": "s3://example-corp-fermion-prod-models/embed/3/",
    } in env
    reranker = deployments["reranker"]["containers"][0]["env"]
    assert reranker[0]["value"] == "s3://example-corp-ml-artifacts/reranker/2024-11/"


def test_a_failing_program_is_a_plan_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise pulumi.RunError("services: not a list")

    monkeypatch.setattr(program, "main", fail)
    with pytest.raises(PlanError) as info:
        plan_environment(parse_environment({}, "qa"))
    assert "plan of 'qa' failed" in str(info.value)
    assert "services" in str(info.value)


def test_the_plan_runs_the_checked_spec_without_reading_stack_config() -> None:
    # A spec built in code, with no stack file and no `fermion:environment` config behind it.
    spec = parse_environment({"network": {"nat": "single"}}, "qa")
    result = plan_environment(spec)
    assert result.environment == "qa"
    nats = [r for r in result.resources if r.type == "aws:ec2/natGateway:NatGateway"]
    assert len(nats) == 1


def _group(name: str, types: list[str], low: int, high: int, capacity: str) -> PlannedResource:
    inputs: dict[str, Any] = {
        "instanceTypes": types,
        "scalingConfig": {"minSize": low, "maxSize": high},
        "capacityType": capacity,
    }
    return PlannedResource(f"urn:{name}", NODE_GROUP, name, None, inputs, True)


def test_cost_lines_say_when_a_price_is_a_bound_or_missing() -> None:
    cost = estimate_cost(
        [
            _group("a", ["g5.xlarge"], 1, 3, "ON_DEMAND"),
            _group("b", ["g5.xlarge"], 0, 2, "SPOT"),
            _group("c", ["x9.huge"], 1, 1, "ON_DEMAND"),
        ],
        load_shapes(),
    )
    a, b, c = cost.lines
    price = load_shapes().instance_types["g5.xlarge"].usd_per_hour
    assert (a.min_usd, a.max_usd, a.note) == (price, 3 * price, None)
    assert b.note is not None and "spot" in b.note
    assert c.usd_per_hour_each == 0 and c.note == "x9.huge has no price in the shape catalog"
    assert cost.per_hour_min_usd == pytest.approx(price, abs=1e-4)
    assert cost.per_hour_max_usd == pytest.approx(5 * price, abs=1e-4)


def _pool_line(plan: Plan, name: str) -> CostLine:
    (line,) = [line for line in plan.cost.lines if line.detail.startswith(f"{name}:")]
    return line


@pytest.mark.parametrize(
    ("shape", "replicas_min", "nodes_min"),
    [("gpu.l4", 3, 3), ("gpu.h100-sxm", 3, 1), ("gpu.l4", 0, 0)],
)
def test_the_minimum_counts_the_nodes_that_services_minimum_replicas_hold_up(
    shape: str, replicas_min: int, nodes_min: int
) -> None:
    spec = parse_environment(
        {
            "network": {"nat": "single"},
            "node_pools": [{"name": "gpu", "shape": shape, "size": {"min": 0, "max": 4}}],
            "services": [
                {
                    "name": "svc",
                    "shape": shape,
                    "replicas": {"min": replicas_min, "max": 4},
                }
            ],
        },
        "qa",
    )
    line = _pool_line(plan_environment(spec), "qa-gpu")
    assert (line.count_min, line.count_max) == (nodes_min, 4)
    if nodes_min:
        assert line.note == f"at min: {nodes_min} more for the services' minimum replicas"
    else:
        assert line.note is None


def test_held_nodes_go_to_the_first_pool_of_the_shape_with_room(prod_plan: Plan) -> None:
    # prod: classifier (min 1) and embed (min 1) on gpu.a10; the on-demand pool's own minimum
    # of 1 covers one, so one more is held up there; the spot pool stays at 0.
    on_demand = _pool_line(prod_plan, "prod-a10-on-demand")
    spot = _pool_line(prod_plan, "prod-a10-spot")
    assert (on_demand.count_min, spot.count_min) == (2, 0)


def test_every_planned_kubernetes_object_passes_its_schema(prod_plan: Plan) -> None:
    objects = [r.inputs for r in prod_plan.resources if is_kubernetes_object(r)]
    kinds = {obj["kind"] for obj in objects}
    assert {"Namespace", "Deployment", "Service", "HTTPScaledObject"} <= kinds
    scaler_schema = crd_schema("http.keda.sh_httpscaledobjects.yaml")
    for obj in objects:
        if obj["kind"] == "HTTPScaledObject":
            jsonschema.validate(obj, scaler_schema)
        else:
            kubernetes_validate.validate(obj, "1.34.0", strict=True)
