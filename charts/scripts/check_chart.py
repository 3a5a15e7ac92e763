"""Offline checks of charts/floe-operator and charts/examples (no cluster, no
helm binary): Helm's own lint and rendering through PyPI `helm-python-sdk`
(Helm's Go SDK in a wheel), then shape checks a rendering cannot catch.

    python3 charts/scripts/check_chart.py OUT_DIR

- `helm lint --strict` equivalent: no warning or error.
- values.schema.json accepts the defaults and refuses an unknown key and a
  wrong type; the templates refuse several replicas without leader election
  and lease timings out of order.
- Renders the chart with its defaults and with variations (no leader
  election, an existing ServiceAccount, no metrics Service) into OUT_DIR, one
  file per rendering, for kubernetes-validate (validate-manifests.sh).
- RBAC is least-privilege: the ClusterRole's rules are exactly the ones the
  operator's API calls need (a rule added or dropped fails here), the Lease
  Role is bound to the one Lease name the Deployment uses.
- The chart's CRD is the generated crds/kafkacluster.yaml (the Rust test
  operator/tests/chart.rs checks this too, and the examples' specs).
- The Argo CD health check in docs/operator.md is the one in
  charts/examples/argocd-health-kafkacluster.lua, and it maps the statuses
  the operator writes to Healthy / Progressing / Degraded (run with PyPI
  `lupa`).
- Every KafkaCluster in charts/examples/ matches the CRD's OpenAPI schema;
  the HPA targets a KafkaCluster of the same file within its bounds; the Argo
  CD Applications point at paths that exist.
"""

import sys
from pathlib import Path

import helm_python as helm
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/floe-operator"
EXAMPLES = ROOT / "charts/examples"

RENDERINGS = {
    "defaults": {},
    "single-replica": {"replicaCount": 1, "leaderElection": {"enabled": False}},
    "existing-account": {"serviceAccount": {"create": False, "name": "platform-operators"}},
    "no-metrics-service": {"metrics": {"port": 9090, "service": {"enabled": False}}},
}

# (apiGroup, resource) -> verbs: what operator/src/controller.rs,
# reconcile/apply.rs, reconcile/dereference.rs and the kube Recorder call.
EXPECTED_CLUSTER_RULES = {
    ("floe.dev", "kafkaclusters"): {"get", "list", "watch", "patch"},
    ("floe.dev", "kafkaclusters/status"): {"get", "patch"},
    ("floe.dev", "kafkaclusters/finalizers"): {"update"},
    ("apps", "statefulsets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "serviceaccounts"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"list", "watch"},
    ("", "nodes"): {"list", "watch"},
    ("", "secrets"): {"get", "list", "watch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def expect_error(what, fn, error=helm.HelmError):
    try:
        fn()
    except error:
        return
    failures.append(f"{what}: expected a refusal, got none")


def documents(text):
    return [d for d in yaml.safe_load_all(text) if d]


def lint():
    report = helm.lint(str(CHART), strict=True, namespace="floe-system")
    for m in report["messages"]:
        check(m["severity"] < 2, f"helm lint: {m['path']}: {m['error']}")
    check(not report["errors"], f"helm lint errors: {report['errors']}")


def values(chart):
    chart.validate_schema({})
    expect_error("schema: unknown key", lambda: chart.validate_schema({"replicas": 2}))
    expect_error("schema: wrong type", lambda: chart.validate_schema({"replicaCount": "two"}))
    expect_error(
        "two replicas without leader election",
        lambda: chart.render({"leaderElection": {"enabled": False}}, name="floe", namespace="floe-system"),
    )
    expect_error(
        "lease timings out of order",
        lambda: chart.render(
            {"leaderElection": {"enabled": True, "renewDeadlineSeconds": 20}},
            name="floe",
            namespace="floe-system",
        ),
    )


def render(chart, out):
    rendered = {}
    for label, overrides in RENDERINGS.items():
        manifests = chart.render(overrides, name="floe", namespace="floe-system", is_install=True)
        docs = [d for text in manifests.values() for d in documents(text)]
        rendered[label] = docs
        (out / f"chart-{label}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return rendered


def rbac(rendered):
    docs = rendered["defaults"]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    (role,) = by_kind["ClusterRole"]
    got = {}
    for rule in role["rules"]:
        check("resourceNames" not in rule, "the ClusterRole names no objects")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                got.setdefault((group, resource), set()).update(rule["verbs"])
    for key in sorted(set(got) | set(EXPECTED_CLUSTER_RULES)):
        check(
            got.get(key) == EXPECTED_CLUSTER_RULES.get(key),
            f"ClusterRole {key}: {sorted(got.get(key, []))} != {sorted(EXPECTED_CLUSTER_RULES.get(key, []))}",
        )
    for rule in role["rules"]:
        check("*" not in rule["verbs"] and "*" not in rule["resources"], "no wildcards in the ClusterRole")
    (deployment,) = by_kind["Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    (lease_role,) = by_kind["Role"]
    named = [r for r in lease_role["rules"] if r.get("resourceNames")]
    check(
        named and named[0]["resourceNames"] == [env["FLOE_OPERATOR_LEASE_NAME"]],
        "the Lease Role names the Deployment's Lease",
    )
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    for binding in by_kind["ClusterRoleBinding"] + by_kind["RoleBinding"]:
        check(binding["subjects"][0]["name"] == account, f"{binding['metadata']['name']} binds {account}")
    single = {d["kind"] for d in rendered["single-replica"]}
    check("Role" not in single, "no Lease Role without leader election")
    existing = rendered["existing-account"]
    check(all(d["kind"] != "ServiceAccount" for d in existing), "no ServiceAccount when create is false")
    (dep,) = [d for d in existing if d["kind"] == "Deployment"]
    check(dep["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operators", "existing account used")
    check(all(d["kind"] != "Service" for d in rendered["no-metrics-service"]), "metrics Service can be turned off")


def crd(chart):
    generated = (ROOT / "crds/kafkacluster.yaml").read_text()
    copy = (CHART / "crds/kafkacluster.yaml").read_text()
    check(copy == generated, "charts/floe-operator/crds/kafkacluster.yaml differs from crds/kafkacluster.yaml")
    check(len(chart.crds) == 1, "the chart ships exactly the KafkaCluster CRD")
    return yaml.safe_load(generated)


def examples(crd_doc, out):
    (version,) = crd_doc["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft7Validator(schema)
    broken = {
        "apiVersion": "floe.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": {"name": "broken"},
        "spec": {"brokers": {"replicas": "three", "walMode": "disk"}},
    }
    check(len(list(validator.iter_errors(broken))) == 3, "the CRD schema refuses a broken KafkaCluster")
    kube_docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs = documents(path.read_text())
        clusters = {d["metadata"]["name"]: d for d in docs if d["kind"] == "KafkaCluster"}
        for d in docs:
            where = f"{path.name}: {d['kind']} {d['metadata']['name']}"
            if d["kind"] == "KafkaCluster":
                for error in validator.iter_errors(d):
                    failures.append(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
            elif d["kind"] == "HorizontalPodAutoscaler":
                kube_docs.append(d)
                target = d["spec"]["scaleTargetRef"]
                check(target["kind"] == "KafkaCluster" and target["apiVersion"] == "floe.dev/v1alpha1", f"{where}: targets a KafkaCluster")
                cluster = clusters.get(target["name"])
                check(cluster is not None, f"{where}: its KafkaCluster is in the same file")
                if cluster:
                    b = cluster["spec"]["brokers"]
                    check(b.get("minReplicas", 1) <= d["spec"]["minReplicas"], f"{where}: minReplicas within the cluster's bounds")
                    check(d["spec"]["maxReplicas"] <= b.get("maxReplicas", d["spec"]["maxReplicas"]), f"{where}: maxReplicas within the cluster's bounds")
            elif d["kind"] == "Application":
                source = d["spec"]["source"]
                check((ROOT / source["path"]).is_dir(), f"{where}: source.path {source['path']} exists")
                check(d["spec"]["destination"].get("namespace"), f"{where}: has a destination namespace")
                check(d["spec"].get("project"), f"{where}: has a project")
            else:
                kube_docs.append(d)
    (out / "examples.yaml").write_text(yaml.safe_dump_all(kube_docs, sort_keys=False))


def health_check_docs():
    lua = (EXAMPLES / "argocd-health-kafkacluster.lua").read_text()
    indented = "".join("    " + line if line.strip() else line for line in lua.splitlines(True))
    docs = (ROOT / "docs/operator.md").read_text()
    check(indented in docs, "docs/operator.md carries charts/examples/argocd-health-kafkacluster.lua verbatim")


def cond(type_, status, message=""):
    return {"type": type_, "status": status, "reason": "R", "message": message}


# (object, expected Argo CD health): the shapes operator/src/reconcile/status.rs writes.
HEALTH_CASES = [
    ({"metadata": {"generation": 1}}, "Progressing"),
    (
        {"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "conditions": [cond("Ready", "True")]}},
        "Progressing",
    ),
    (
        {
            "metadata": {"generation": 2},
            "status": {
                "observedGeneration": 2,
                "conditions": [cond("Ready", "True", "3/3"), cond("Progressing", "False"), cond("Degraded", "False")],
            },
        },
        "Healthy",
    ),
    (
        {
            "metadata": {"generation": 2},
            "status": {
                "observedGeneration": 2,
                "conditions": [cond("Ready", "True"), cond("Progressing", "True", "scaling"), cond("Degraded", "False")],
            },
        },
        "Progressing",
    ),
    (
        {
            "metadata": {"generation": 4},
            "status": {
                "observedGeneration": 4,
                "conditions": [cond("Ready", "False"), cond("Progressing", "False"), cond("Degraded", "True", "invalid")],
            },
        },
        "Degraded",
    ),
    (
        {
            "metadata": {"generation": 1},
            "status": {
                "observedGeneration": 1,
                "conditions": [cond("Ready", "False", "1/3"), cond("Progressing", "True", "creating"), cond("Degraded", "False")],
            },
        },
        "Progressing",
    ),
]


def health_check_lua():
    """Run the health check (Argo CD runs it with gopher-lua, Lua 5.1; this
    uses lupa's Lua, which runs the same subset) over the status shapes."""
    from lupa import LuaRuntime

    script = (EXAMPLES / "argocd-health-kafkacluster.lua").read_text()
    for obj, expected in HEALTH_CASES:
        lua = LuaRuntime(unpack_returned_tuples=True)
        lua.globals().obj = lua.table_from(obj, recursive=True)
        hs = lua.execute(script)
        check(hs["status"] == expected, f"health check of {obj}: {hs['status']} != {expected}")
        check(bool(hs["message"]), f"health check of {obj}: no message")


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    chart = helm.Chart.load(str(CHART))
    lint()
    values(chart)
    rendered = render(chart, out)
    rbac(rendered)
    examples(crd(chart), out)
    health_check_docs()
    health_check_lua()
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"chart checks: {len(RENDERINGS)} renderings and the examples are consistent (helm {helm.helm_sdk_version()})")


if __name__ == "__main__":
    main()
