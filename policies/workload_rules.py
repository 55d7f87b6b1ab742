"""Rules for what runs in the cluster: locked-down pods, pinned images, no public service
without TLS and tokens, and workload roles limited to what they need."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from fermion.policies.cluster_rules import GPU_TAINT_KEY
from fermion.policies.findings import MANDATORY, Resource, Rule, is_unknown
from fermion.policies.links import as_list, attached, policy_document, statements
from fermion.policies.tenancy_rules import INGRESSES, public_ingress

__all__ = ["POD_TYPES", "WORKLOAD_RULES", "pod_spec"]

# Where each kind keeps its pod spec.
_POD_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
POD_TYPES = tuple(_POD_PATHS)
SERVICES = ("kubernetes:core/v1:Service",)
ROLES = ("aws:iam/role:Role",)
ROLE_POLICIES = ("aws:iam/rolePolicy:RolePolicy",)
POD_IDENTITIES = ("aws:eks/podIdentityAssociation:PodIdentityAssociation",)
_NLB = "service.beta.kubernetes.io/aws-load-balancer"
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_CONTENT_TAG = re.compile(r":[0-9a-f]{12,64}$")
_WORKLOAD_PRINCIPALS = ("pods.eks.amazonaws.com",)
# Where the add-ons fermion installs run; roles of pods there are not workload roles.
SYSTEM_NAMESPACES = ("kube-system", "keda", "nvidia")


def pod_spec(resource: Resource) -> dict[str, Any]:
    """The pod spec inside a workload object (empty where it has none)."""
    spec = resource.get(*_POD_PATHS.get(resource.type, ("",)))
    return spec if isinstance(spec, dict) else {}


def _containers(resource: Resource) -> list[dict[str, Any]]:
    spec = pod_spec(resource)
    found = [*as_list(spec.get("initContainers")), *as_list(spec.get("containers"))]
    return [c for c in found if isinstance(c, dict)]


def _context(container: dict[str, Any], key: str, pod: dict[str, Any]) -> Any:
    """A security setting: the container's own, else the pod's (where the pod may set it)."""
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (pod.get("securityContext") or {}).get(key)


def non_root(resource: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """Containers run as a user other than root."""
    pod = pod_spec(resource)
    for c in _containers(resource):
        user = _context(c, "runAsUser", pod)
        if _context(c, "runAsNonRoot", pod) is not True and not (
            isinstance(user, int) and user > 0
        ):
            yield (
                f"container {c.get('name')} may run as root: set securityContext.runAsNonRoot true"
            )


def read_only_root(resource: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """Containers cannot write to their image's file system (scratch goes to an emptyDir)."""
    for c in _containers(resource):
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            yield (
                f"container {c.get('name')} can write its root file system: set "
                "securityContext.readOnlyRootFilesystem true and mount an emptyDir where it writes"
            )


def no_privilege_escalation(resource: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """No process in a container can gain more privileges than its parent (setuid)."""
    for c in _containers(resource):
        if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False:
            yield (
                f"container {c.get('name')} may escalate: set "
                "securityContext.allowPrivilegeEscalation false"
            )


def not_privileged(resource: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """No privileged containers."""
    for c in _containers(resource):
        if (c.get("securityContext") or {}).get("privileged") is True:
            yield f"container {c.get('name')} is privileged: remove securityContext.privileged"


def no_host_path(resource: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """No volume mounts a path of the node."""
    for volume in as_list(pod_spec(resource).get("volumes")):
        if isinstance(volume, dict) and volume.get("hostPath") is not None:
            yield f"volume {volume.get('name')} mounts a node path: use an emptyDir or a PVC"


def no_host_network(resource: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """Pods use their own network namespace, not the node's."""
    if pod_spec(resource).get("hostNetwork") is True:
        yield "the pod shares the node's network: remove hostNetwork"


def resource_limits(resource: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """Every container has a memory limit and a CPU request. (A CPU limit is not asked for:
    it throttles inference that could use idle cores.)"""
    for c in _containers(resource):
        limits = (c.get("resources") or {}).get("limits") or {}
        requests = (c.get("resources") or {}).get("requests") or {}
        if "memory" not in limits or "cpu" not in requests:
            yield f"container {c.get('name')} has no memory limit or CPU request: set resources"


def gpu_toleration(resource: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """A pod that asks for GPUs tolerates the GPU pools' taint, and only such a pod does (or
    a DaemonSet's, which runs on every node)."""
    pod = pod_spec(resource)
    wants_gpu = any(
        GPU_TAINT_KEY in ((c.get("resources") or {}).get("limits") or {})
        for c in _containers(resource)
    )
    tolerates = any(
        isinstance(t, dict) and t.get("key") == GPU_TAINT_KEY
        for t in as_list(pod.get("tolerations"))
    )
    if wants_gpu and not tolerates:
        yield f"GPU limits without the {GPU_TAINT_KEY} toleration: the pod can never schedule"
    # A DaemonSet's pod follows the nodes (one on each) and never keeps a GPU node up.
    if tolerates and not wants_gpu and resource.type != "kubernetes:apps/v1:DaemonSet":
        yield f"the {GPU_TAINT_KEY} toleration without GPU limits: the pod would hold a GPU node"


def image_pinned(resource: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """Images are named by digest (@sha256:...) or by a content tag (a hash of the build
    context), never by a tag that can move, such as latest."""
    for c in _containers(resource):
        image = c.get("image")
        if not isinstance(image, str) or is_unknown(image):
            continue
        if not (_DIGEST.search(image) or _CONTENT_TAG.search(image)):
            yield f"container {c.get('name')} runs {image}, a tag that can move: pin it by digest"


def service_not_public(service: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """A Service or Ingress that the internet can reach terminates TLS and checks tokens."""
    if service.type in INGRESSES:
        yield from public_ingress(service, stack)
        return
    if service.get("spec", "type") not in ("LoadBalancer", "NodePort"):
        return
    annotations = service.get("metadata", "annotations") or {}
    internal = annotations.get(f"{_NLB}-scheme") == "internal" or str(
        annotations.get(f"{_NLB}-internal")
    ).lower() in ("true", "0.0.0.0/0")
    if internal:
        return
    tls = bool(annotations.get(f"{_NLB}-ssl-cert"))
    token = bool(annotations.get("fermion.dev/auth"))
    if not (tls and token):
        yield (
            "a public load balancer without TLS and token checks, straight to the pods: serve "
            "it through an HTTPS Ingress to the interceptor (`public` with `hostname` and "
            "`certificate_arn`), or terminate TLS (aws-load-balancer-ssl-cert) behind token auth"
        )


def _workload_role(role: Resource) -> bool:
    trust = policy_document(role.get("assumeRolePolicy"))
    if trust is None:
        return False
    for statement in statements(trust):
        principal = statement.get("Principal")
        services = as_list(principal.get("Service")) if isinstance(principal, dict) else []
        federated = isinstance(principal, dict) and principal.get("Federated") is not None
        if federated or any(s in _WORKLOAD_PRINCIPALS for s in services):
            return True
    return False


def _roles(policy: Resource, stack: Sequence[Resource]) -> list[Resource]:
    """The workload roles that `policy` is attached to."""
    return [
        r
        for r in stack
        if r.type in ROLES
        and policy in attached(r, stack, ROLE_POLICIES, "role", "name", "id")
        and _workload_role(r)
        and not _add_on_role(r, stack)
    ]


def _add_on_role(role: Resource, stack: Sequence[Resource]) -> bool:
    """A cluster add-on's role (its pods run in a system namespace): its policy is the
    upstream project's own, reviewed when the add-on's version is pinned."""
    namespaces = [
        str(a.get("namespace")) for a in attached(role, stack, POD_IDENTITIES, "roleArn", "arn")
    ]
    trust = json.dumps(policy_document(role.get("assumeRolePolicy")) or {})
    namespaces += re.findall(r"system:serviceaccount:([^:\"]+):", trust)
    return bool(namespaces) and all(n in SYSTEM_NAMESPACES for n in namespaces)


def no_wildcards(policy: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """A workload role's policy allows no `*` action, and `*` as the resource only for actions
    that take none (List, Describe) or under a condition."""
    document = policy_document(policy.get("policy"))
    if document is None or not _roles(policy, stack):
        return
    for statement in statements(document):
        if statement.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in as_list(statement.get("Action"))]
        if "*" in actions or any(a.endswith(":*") for a in actions):
            yield f"statement {statement.get('Sid', '')!s} allows every action: name the actions"
        resources = as_list(statement.get("Resource"))
        readonly = all(a.split(":")[-1].startswith(("Describe", "List", "Get")) for a in actions)
        if "*" in resources and not readonly and statement.get("Condition") is None:
            yield (
                f"statement {statement.get('Sid', '')!s} allows {', '.join(actions)} on every "
                "resource: name the resources or add a condition"
            )


def model_reader_prefix(policy: Resource, stack: Sequence[Resource]) -> Iterator[str]:
    """A workload role reads models only under its own service's prefix, s3://bucket/<sa>/."""
    document = policy_document(policy.get("policy"))
    roles = _roles(policy, stack)
    if document is None or not roles:
        return
    accounts = [
        str(a.get("serviceAccount"))
        for role in roles
        for a in attached(role, stack, POD_IDENTITIES, "roleArn", "arn")
    ]
    for statement in statements(document):
        actions = [str(a) for a in as_list(statement.get("Action"))]
        if statement.get("Effect") != "Allow" or "s3:GetObject" not in actions:
            continue
        for arn in (str(r) for r in as_list(statement.get("Resource"))):
            prefix = arn.partition(":::")[2].partition("/")[2].removesuffix("*").rstrip("/")
            if not prefix or (accounts and prefix.split("/")[0] not in accounts):
                own = accounts[0] if accounts else "<service>"
                yield (
                    f"reads {arn}: limit s3:GetObject to the service's own prefix, <bucket>/{own}/*"
                )


WORKLOAD_RULES = (
    Rule("pod-non-root", MANDATORY, "Containers run as non-root.", POD_TYPES, non_root),
    Rule(
        "pod-read-only-root-fs",
        MANDATORY,
        "Containers have a read-only root file system.",
        POD_TYPES,
        read_only_root,
    ),
    Rule(
        "pod-no-privilege-escalation",
        MANDATORY,
        "Containers set allowPrivilegeEscalation false.",
        POD_TYPES,
        no_privilege_escalation,
    ),
    Rule("pod-not-privileged", MANDATORY, "No privileged containers.", POD_TYPES, not_privileged),
    Rule("pod-no-host-path", MANDATORY, "No hostPath volumes.", POD_TYPES, no_host_path),
    Rule("pod-no-host-network", MANDATORY, "No hostNetwork pods.", POD_TYPES, no_host_network),
    Rule(
        "pod-resource-limits",
        MANDATORY,
        "Containers set a memory limit and a CPU request.",
        POD_TYPES,
        resource_limits,
    ),
    Rule(
        "pod-gpu-toleration",
        MANDATORY,
        "GPU limits come with the GPU toleration, and only they do.",
        POD_TYPES,
        gpu_toleration,
    ),
    Rule(
        "image-pinned",
        MANDATORY,
        "Images are pinned by digest or content tag.",
        POD_TYPES,
        image_pinned,
    ),
    Rule(
        "service-not-public",
        MANDATORY,
        "No public Service or Ingress without TLS and tokens.",
        (*SERVICES, *INGRESSES),
        service_not_public,
    ),
    Rule(
        "iam-no-wildcards",
        MANDATORY,
        "Workload roles allow no `*` action or unconditioned `*` resource.",
        ROLE_POLICIES,
        no_wildcards,
    ),
    Rule(
        "iam-model-reader-prefix",
        MANDATORY,
        "Each model reader reads only its own prefix.",
        ROLE_POLICIES,
        model_reader_prefix,
    ),
)
