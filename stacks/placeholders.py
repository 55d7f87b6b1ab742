"""Stand-ins the offline plan gives for the ids, names and ARNs that AWS assigns.

In `pulumi preview` a bucket's ARN is unknown, and so is every JSON document built from it: a
bucket policy, a role's policy. The plan gives each resource a placeholder instead, marked with
the resource's name, `arn:aws:s3:::(known after up: dev-models)`, so those documents show in
full and the policy rules can read them. What stays unknown for real (digests, endpoints,
account ids) still says `(known after up)`.
"""

from __future__ import annotations

from typing import Any

from fermion.policies.links import placeholder

__all__ = ["ACCOUNT", "placeholder", "placeholder_state"]

ACCOUNT = "(known after up: account)"

_S3_BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
# ARNs that do not read `arn:aws:<module>:<region>:<account>:<kind>/<name>`.
_ARNS = {
    "aws:cloudwatch/logGroup:LogGroup": "arn:aws:logs:{region}:{account}:log-group:{name}",
    "aws:iam/role:Role": "arn:aws:iam::{account}:role/{name}",
    "aws:iam/policy:Policy": "arn:aws:iam::{account}:policy/{name}",
    "aws:iam/user:User": "arn:aws:iam::{account}:user/{name}",
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": (
        "arn:aws:iam::{account}:oidc-provider/{name}"
    ),
    "aws:kms/alias:Alias": "arn:aws:kms:{region}:{account}:{name}",
}


def placeholder_state(
    type_: str, name: str, inputs: dict[str, Any], region: str
) -> tuple[str, dict[str, Any]]:
    """The id and state the plan's mock engine returns for a new resource: its inputs, plus
    placeholders for the id, name and ARN that AWS would assign."""
    state = dict(inputs)
    stand_in = placeholder(name)
    if not type_.startswith("aws:"):
        if type_ == "docker-build:index:Image":
            state.setdefault("digest", "sha256:(known after up)")
        if type_ == "random:index/randomPassword:RandomPassword":
            state.setdefault("result", "(known after up)")
        return stand_in, state
    module, _, kind = type_.split(":")[1].partition("/")
    if type_ in _S3_BUCKETS:
        given_bucket = state.get("bucket")
        bucket = given_bucket if isinstance(given_bucket, str) else stand_in
        state["bucket"] = bucket
        state["arn"] = f"arn:aws:s3:::{bucket}"
        return bucket, state
    if isinstance(state.get("name"), str) and state["name"]:
        given = state["name"]
    else:
        given = stand_in
        state["name"] = stand_in
    template = _ARNS.get(type_, f"arn:aws:{module}:{{region}}:{{account}}:{kind.lower()}/{{name}}")
    state.setdefault("arn", template.format(region=region, account=ACCOUNT, name=given))
    if type_ == "aws:ecr/repository:Repository":
        state["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{given}"
    return stand_in, state
