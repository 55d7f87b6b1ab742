"""InferenceService: the Kubernetes objects and AWS role of one model server, under mocks."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from fermion.components.inference_service import (
    PRE_STOP_SECONDS,
    InferenceService,
    InferenceServiceArgs,
    ServiceArgsError,
    http_scaled_object_spec,
    termination_grace_period_s,
)
from fermion.components.model_store import s3_uri_read_policy
from fermion.environments import load_shapes
from fermion.runtime_images.server.config import DEFAULT_GRACE_PERIOD_S, ServerConfig

from ..conftest import crd_schema
from .conftest import Recorder, core, settle
from .test_cluster import _mock_aws

KUBERNETES = "1.34.0"
IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/fermion/runtime@sha256:" + "a" * 64


def _args(**overrides: Any) -> InferenceServiceArgs:
    values: dict[str, Any] = {
        "name": "embed",
        "image": IMAGE,
        "shape": load_shapes().get("gpu.2xa100-80gb"),
        "cluster": core(),
        "model_uri": "s3://models/embed/3/",
        "model_policy": s3_uri_read_policy("s3://models/embed/3/"),
        "min_replicas": 0,
        "max_replicas": 4,
        "target": 7.5,
    }
    values.update(overrides)
    return InferenceServiceArgs(**values)


def _service(mocks: Recorder, **overrides: Any) -> InferenceService:
    _mock_aws(mocks)
    service = InferenceService("dev-embed", _args(**overrides))
    settle()
    return service


def _objects(mocks: Recorder) -> dict[str, dict[str, Any]]:
    return {
        str(r.inputs["kind"]): r.inputs for r in mocks.resources if r.typ.startswith("kubernetes:")
    }


def test_the_deployment_is_a_valid_kubernetes_object_sized_by_its_shape(mocks: Recorder) -> None:
    _service(mocks)
    deployment = _objects(mocks)["Deployment"]
    kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    shape = load_shapes().get("gpu.2xa100-80gb")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["cpu"] == f"{shape.pod_millicores}m"
    assert pod["nodeSelector"] == {"fermion.dev/shape": "gpu.2xa100-80gb"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert {"name": "FERMION_MODEL_URI", "value": "s3://models/embed/3/"} in container["env"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    # The pod outlives the server's drain: pre-stop pause + grace period + margin.
    assert pod["terminationGracePeriodSeconds"] == 5 + 30 + 5
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["serviceAccountName"] == "embed"


def test_the_pod_waits_as_long_as_the_server_drains_by_default(mocks: Recorder) -> None:
    server_default = {f.name: f.default for f in dataclasses.fields(ServerConfig)}
    args_default = {f.name: f.default for f in dataclasses.fields(InferenceServiceArgs)}
    assert args_default["grace_period_s"] == server_default["grace_period_s"]
    assert server_default["grace_period_s"] == DEFAULT_GRACE_PERIOD_S
    _service(mocks)
    pod = _objects(mocks)["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == termination_grace_period_s(
        DEFAULT_GRACE_PERIOD_S
    )
    assert pod["terminationGracePeriodSeconds"] > PRE_STOP_SECONDS + DEFAULT_GRACE_PERIOD_S


def test_a_longer_drain_lengthens_the_pods_grace_period(mocks: Recorder) -> None:
    _service(mocks, grace_period_s=119.5)
    pod = _objects(mocks)["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 120 + 5


def test_every_kubernetes_object_validates_and_lives_in_the_namespace(mocks: Recorder) -> None:
    _service(mocks)
    objects = _objects(mocks)
    assert set(objects) == {
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HTTPScaledObject",
    }
    for kind, obj in objects.items():
        assert obj["metadata"]["namespace"] == "inference", kind
        assert obj["metadata"]["name"] == "embed", kind
        if kind != "HTTPScaledObject":
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_the_scaler_matches_keda_http_add_on_schema(mocks: Recorder) -> None:
    _service(mocks)
    scaler = _objects(mocks)["HTTPScaledObject"]
    jsonschema.validate(scaler, crd_schema("http.keda.sh_httpscaledobjects.yaml"))
    spec = scaler["spec"]
    # The CRD's CEL rule, which JSON Schema cannot express: port or portName, not both.
    assert ("port" in spec["scaleTargetRef"]) != ("portName" in spec["scaleTargetRef"])
    assert spec["pathPrefixes"] == ["/v2/models/embed"]
    assert spec["replicas"] == {"min": 0, "max": 4}
    assert spec["scalingMetric"] == {"concurrency": {"targetValue": 8}}
    assert spec["scaleTargetRef"]["service"] == "embed"


def test_rps_scales_on_request_rate(mocks: Recorder) -> None:
    spec = http_scaled_object_spec(_args(metric="rps", target=200))
    assert spec["scalingMetric"]["requestRate"]["targetValue"] == 200
    jsonschema.validate(
        {"apiVersion": "http.keda.sh/v1alpha1", "kind": "HTTPScaledObject", "spec": spec},
        crd_schema("http.keda.sh_httpscaledobjects.yaml"),
    )


def test_a_malformed_scaler_fails_the_schema_check(mocks: Recorder) -> None:
    spec = http_scaled_object_spec(_args())
    spec["replicas"]["min"] = "zero"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": spec}, crd_schema("http.keda.sh_httpscaledobjects.yaml"))


def test_the_model_is_read_with_the_services_own_role(mocks: Recorder) -> None:
    _service(mocks)
    (association,) = mocks.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert association.inputs["namespace"] == "inference"
    assert association.inputs["serviceAccount"] == "embed"
    (role,) = mocks.of_type("aws:iam/role:Role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    (policy,) = mocks.of_type("aws:iam/rolePolicy:RolePolicy")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    assert statements[0]["Resource"] == ["arn:aws:s3:::models/embed/3/*"]
    assert statements[1]["Condition"] == {"StringLike": {"s3:prefix": ["embed/3/*"]}}


def test_a_public_service_gets_an_internet_facing_nlb(mocks: Recorder) -> None:
    service = _service(mocks, public=True, min_replicas=1)
    balancer = [
        r.inputs
        for r in mocks.of_type("kubernetes:core/v1:Service")
        if r.inputs["spec"].get("type")
    ]
    (spec,) = balancer
    assert spec["spec"]["type"] == "LoadBalancer"
    annotations = spec["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internet-facing"
    kubernetes_validate.validate(spec, KUBERNETES, strict=True)
    assert service.public_endpoint is not None


def test_a_private_service_has_only_its_in_cluster_endpoint(mocks: Recorder) -> None:
    service = _service(mocks)
    assert service.public_endpoint is None
    assert service.endpoint == (
        "http://keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local:8080/v2/models/embed"
    )


def test_one_replica_needs_no_disruption_budget(mocks: Recorder) -> None:
    _service(mocks, min_replicas=1, max_replicas=1)
    assert "PodDisruptionBudget" not in _objects(mocks)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"public": True, "min_replicas": 0}, "cannot scale to zero"),
        ({"min_replicas": 3, "max_replicas": 2}, "are not a range"),
        ({"env": {"FERMION_MODEL_URI": "s3://x/"}}, "which model_uri owns"),
    ],
)
def test_arguments_no_cluster_could_run_are_refused(
    mocks: Recorder, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ServiceArgsError, match=message):
        _args(**overrides)


def test_children_use_the_given_provider(mocks: Recorder) -> None:
    _service(mocks)
    kube = [r for r in mocks.resources if r.typ.startswith("kubernetes:")]
    assert kube and all("k8s" in (r.provider or "") for r in kube)
