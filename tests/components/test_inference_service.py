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
from fermion.components.service_access import tokens_checksum
from fermion.environments import load_shapes
from fermion.runtime_images.server.config import DEFAULT_GRACE_PERIOD_S, ServerConfig

from ..conftest import crd_schema
from .conftest import RANDOM_PASSWORD, Recorder, core, plain, settle
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
        str(r.inputs["kind"]): plain(r.inputs)
        for r in mocks.resources
        if r.typ.startswith("kubernetes:")
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
        "Secret",
        "NetworkPolicy",
    }
    for kind, obj in objects.items():
        assert obj["metadata"]["namespace"] == "inference", kind
        assert obj["metadata"]["name"].startswith("embed"), kind
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


CERTIFICATE = "arn:aws:acm:us-west-2:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
PUBLIC = {
    "public": True,
    "hostname": "embed.ml.example.com",
    "certificate_arn": CERTIFICATE,
    "allowed_cidrs": ("203.0.113.0/24", "198.51.100.0/24"),
}


def test_a_public_service_is_served_over_https_through_the_interceptor(mocks: Recorder) -> None:
    service = _service(mocks, **PUBLIC)
    objects = _objects(mocks)
    # No load balancer goes straight to the pods: the only Service is the in-cluster one.
    assert "type" not in objects["Service"]["spec"]
    ingress = objects["Ingress"]
    kubernetes_validate.validate(ingress, KUBERNETES, strict=True)
    assert ingress["metadata"]["namespace"] == "keda"
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert ingress["spec"]["tls"] == [{"hosts": ["embed.ml.example.com"]}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "embed.ml.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/v2/models/embed"
    assert path["backend"]["service"] == {
        "name": "keda-add-ons-http-interceptor-proxy",
        "port": {"number": 8080},
    }
    annotations = ingress["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == CERTIFICATE
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [
        {"HTTP": 80},
        {"HTTPS": 443},
    ]
    assert annotations["alb.ingress.kubernetes.io/inbound-cidrs"] == (
        "203.0.113.0/24,198.51.100.0/24"
    )
    # The interceptor routes the public hostname, and the in-cluster one, by host and path.
    scaler = objects["HTTPScaledObject"]["spec"]
    assert scaler["hosts"] == [
        "keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local",
        "embed.ml.example.com",
    ]
    jsonschema.validate(
        objects["HTTPScaledObject"], crd_schema("http.keda.sh_httpscaledobjects.yaml")
    )
    # All traffic counts for the autoscaler, so a public service scales to zero too.
    assert scaler["replicas"]["min"] == 0
    assert service.public_endpoint == "https://embed.ml.example.com/v2/models/embed"
    assert service.load_balancer is not None


def test_a_public_service_is_open_to_any_address_unless_limited(mocks: Recorder) -> None:
    _service(mocks, **{**PUBLIC, "allowed_cidrs": ()})
    annotations = _objects(mocks)["Ingress"]["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/inbound-cidrs"] == "0.0.0.0/0"


def test_requests_need_one_of_two_tokens_the_pod_reads_from_a_file(mocks: Recorder) -> None:
    service = _service(mocks)
    objects = _objects(mocks)
    secret = objects["Secret"]
    assert secret["metadata"]["name"] == "embed-tokens"
    tokens = secret["stringData"]["tokens"].splitlines()
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert all(r.inputs["length"] >= 32 for r in mocks.of_type(RANDOM_PASSWORD))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "FERMION_AUTH_TOKEN_FILE", "value": "/var/run/fermion/auth/tokens"} in (
        container["env"]
    )
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "auth-tokens"]
    assert mount == {"name": "auth-tokens", "mountPath": "/var/run/fermion/auth", "readOnly": True}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "auth-tokens"]
    assert volume["secret"]["secretName"] == "embed-tokens"
    # The server reads the file as its own (non-root) user.
    assert int(volume["secret"]["defaultMode"]) & 0o004
    annotations = objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["fermion.dev/auth-tokens-sha256"] == tokens_checksum(tokens)
    assert pod["automountServiceAccountToken"] is False
    assert _resolve(service.tokens) == tokens


def _resolve(output: Any) -> Any:
    found: list[Any] = []
    output.apply(found.append)
    settle()
    return found[0]


def test_a_new_generation_replaces_one_token_and_keeps_the_other(mocks: Recorder) -> None:
    _service(mocks)
    before = _objects(mocks)["Secret"]["stringData"]["tokens"].splitlines()
    mocks.resources.clear()
    _service(mocks, token_generations=(1, 2))
    after = _objects(mocks)["Secret"]["stringData"]["tokens"].splitlines()
    assert after[0] == before[0]
    assert after[1] != before[1]


def test_without_auth_there_is_no_token(mocks: Recorder) -> None:
    _service(mocks, auth=False)
    objects = _objects(mocks)
    assert "Secret" not in objects
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert all(e["name"] != "FERMION_AUTH_TOKEN_FILE" for e in container["env"])


def test_only_the_interceptor_and_metrics_scrapes_reach_the_pods(mocks: Recorder) -> None:
    _service(mocks)
    objects = _objects(mocks)
    policy = objects["NetworkPolicy"]
    kubernetes_validate.validate(policy, KUBERNETES, strict=True)
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    interceptor, metrics = rule["from"]
    assert interceptor["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "keda"
    }
    assert interceptor["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "interceptor"
    )
    assert metrics == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }


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
        ({"public": True}, "served over TLS only"),
        ({"public": True, "hostname": "embed.ml.example.com"}, "served over TLS only"),
        ({**PUBLIC, "auth": False}, "must check bearer tokens"),
        ({"env": {"FERMION_AUTH_TOKEN_FILE": "/x"}}, "which the component owns"),
        ({"min_replicas": 3, "max_replicas": 2}, "are not a range"),
        ({"env": {"FERMION_MODEL_URI": "s3://x/"}}, "which the component owns"),
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
