"""`python -m services.manager render`: a cluster's Kubernetes manifests, printed for review.

The spec comes from flags, or as the JSON body of a `POST /clusters` request on stdin, and
is validated exactly as the API validates it. Nothing talks to any API; settings (image
registry, storage class, ...) come from the `ESS_` environment as for the running manager.
Generated Secrets show placeholders (their values exist only once applied), but for the
transport certificates, which are a fresh set made for the output.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

import yaml
from pydantic import ValidationError

from libs.common.models import ClusterRecord
from services.manager.drivers.kubernetes_manifests import render_for_review
from services.manager.drivers.kubernetes_rules import ENGINE_VERSIONS
from services.manager.schemas import CreateClusterRequest, field_of, fix_for, is_dns_label
from services.manager.settings import KubernetesDriverSettings, ManagerSettings
from services.manager.transitions import EnginesOnOffer, Invalid, NewClusterDefaults, new_cluster_id, new_record

SPEC_FLAGS = ("tenant_org_id", "user", "service_name", "replicas", "cpu", "memory", "storage", "engine", "version")


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m services.manager render",
        description="Print the Kubernetes manifests of one tenant cluster as YAML. Without "
                    "--tenant-org-id, reads a POST /clusters JSON body from stdin.",
    )
    parse.add_argument("--tenant-org-id")
    parse.add_argument("--user")
    parse.add_argument("--service-name")
    parse.add_argument("--replicas", type=int)
    parse.add_argument("--cpu")
    parse.add_argument("--memory")
    parse.add_argument("--storage")
    parse.add_argument("--engine", choices=sorted(ENGINE_VERSIONS))
    parse.add_argument("--version")
    parse.add_argument("--cluster-id", help="the id the cluster would have (default: a fresh one)")
    return parse


def cluster_from_request(body: dict, settings: ManagerSettings, cluster_id: str) -> ClusterRecord:
    """The record the API would write for this body on the kubernetes driver."""
    request = CreateClusterRequest.model_validate(body)
    try:
        return new_record(request, cluster_id, EnginesOnOffer("kubernetes", ENGINE_VERSIONS),
                          NewClusterDefaults.of(settings))
    except Invalid as exc:
        raise ValueError(f"{exc.field}: {exc.message}; {exc.fix}") from exc


class _PlainDumper(yaml.SafeDumper):
    """No &anchors or *aliases for repeated selectors: a reviewer reads each object whole."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def render_yaml(cluster: ClusterRecord, settings: KubernetesDriverSettings) -> str:
    header = (f"# es-serverless cluster {cluster.id}: tenant {cluster.tenant_org_id}, service "
              f"{cluster.service_name}, {cluster.spec.engine} {cluster.spec.version}\n"
              "# Secret values are placeholders or made for this output; the driver generates its own when it applies.\n")
    return header + yaml.dump_all(
        render_for_review(cluster, settings), Dumper=_PlainDumper, sort_keys=False, explicit_start=True
    )


def main(argv: list[str], stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    args = parser().parse_args(argv)
    if args.tenant_org_id is None:
        if stdin.isatty():
            print("render: pass the spec as flags (--tenant-org-id ...) or a POST /clusters body on stdin",
                  file=stderr)
            return 2
        try:
            body = json.load(stdin)
        except json.JSONDecodeError as exc:
            print(f"render: stdin is not a JSON request body ({exc}); or pass --tenant-org-id ...", file=stderr)
            return 2
    else:
        body = {name: getattr(args, name) for name in SPEC_FLAGS if getattr(args, name) is not None}
    if args.cluster_id is not None and not is_dns_label(args.cluster_id):
        print(f"render: --cluster-id {args.cluster_id!r}: a DNS-1123 label, like the ids the API gives", file=stderr)
        return 2
    settings = ManagerSettings()
    try:
        cluster = cluster_from_request(body, settings, args.cluster_id or new_cluster_id())
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            fix = fix_for(loc)
            message = error["msg"].removeprefix("Value error, ")
            print(f"render: {field_of(loc)}: {message}" + (f"; {fix}" if fix else ""), file=stderr)
        return 2
    except ValueError as exc:
        print(f"render: {exc}", file=stderr)
        return 2
    stdout.write(render_yaml(cluster, settings))
    return 0
