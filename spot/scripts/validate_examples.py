"""Offline checks of the autoscaling examples in charts/examples/autoscaling/.

- The KEDA ScaledObject against the ScaledObject CRD's OpenAPI schema
  (spot/tests/schemas/, KEDA v2.20.2), plus the prometheus trigger's
  required metadata (serverAddress, query, threshold), as KEDA's scaler
  parses them.
- The prometheus-adapter values against a JSON schema transcribed from the
  adapter's config types (pkg/config/config.go: DiscoveryRule,
  ResourceMapping, NameMapping); `name.matches` must match the series the
  rule's `seriesQuery` selects, and `metricsQuery` may use only the
  adapter's template fields.
- Cross-references: every metric the HPA reads is an external metric the
  adapter serves; every series queried is listed in docs/metrics.md; both
  autoscalers target the KafkaCluster's /scale subresource and carry the
  same scale-down stabilisation.

The HPA's Kubernetes schema is checked by kubernetes-validate (see
validate-examples.sh). `--self-test` also checks that broken copies fail.
"""

import copy
import re
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "charts/examples/autoscaling"
KEDA_CRD = ROOT / "spot/tests/schemas/keda.sh_scaledobjects.v2.20.2.yaml"

# prometheus-adapter's rule types (pkg/config/config.go), as JSON schema.
_GROUP_RESOURCE = {
    "type": "object",
    "properties": {"group": {"type": "string"}, "resource": {"type": "string"}},
    "required": ["resource"],
    "additionalProperties": False,
}
_RULE = {
    "type": "object",
    "properties": {
        "seriesQuery": {"type": "string", "minLength": 1},
        "seriesFilters": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"is": {"type": "string"}, "isNot": {"type": "string"}},
                "additionalProperties": False,
                "minProperties": 1,
                "maxProperties": 1,
            },
        },
        "resources": {
            "type": "object",
            "properties": {
                "template": {"type": "string"},
                "overrides": {"type": "object", "additionalProperties": _GROUP_RESOURCE},
                "namespaced": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "name": {
            "type": "object",
            "properties": {"matches": {"type": "string"}, "as": {"type": "string"}},
            "required": ["matches"],
            "additionalProperties": False,
        },
        "metricsQuery": {"type": "string", "minLength": 1},
    },
    "required": ["seriesQuery", "resources", "name", "metricsQuery"],
    "additionalProperties": False,
}
ADAPTER_VALUES_SCHEMA = {
    "type": "object",
    "properties": {
        "prometheus": {
            "type": "object",
            "properties": {"url": {"type": "string"}, "port": {"type": "integer"}},
            "required": ["url"],
        },
        "rules": {
            "type": "object",
            "properties": {
                "default": {"type": "boolean"},
                "custom": {"type": "array", "items": _RULE},
                "external": {"type": "array", "items": _RULE, "minItems": 1},
            },
            "required": ["external"],
        },
    },
    "required": ["prometheus", "rules"],
}
TEMPLATE_FIELDS = {".Series", ".LabelMatchers", ".GroupBy"}
SERIES = re.compile(r"\bfloe_[a-z_]+\b")


def load(name):
    return yaml.safe_load((EXAMPLES / name).read_text())


def documented_series():
    text = (ROOT / "docs/metrics.md").read_text()
    return set(SERIES.findall(text))


def keda_schema():
    crd = yaml.safe_load(KEDA_CRD.read_text())
    for version in crd["spec"]["versions"]:
        if version["name"] == "v1alpha1":
            return version["schema"]["openAPIV3Schema"]
    raise SystemExit("no v1alpha1 in the ScaledObject CRD")


def kafkacluster_scale():
    crd = yaml.safe_load((ROOT / "crds/kafkacluster.yaml").read_text())
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    served = {
        f"{group}/{v['name']}"
        for v in crd["spec"]["versions"]
        if v.get("served") and "scale" in v.get("subresources", {})
    }
    return kind, served


def check(hpa, adapter, keda):
    """Every problem found, as text; empty when the examples are valid."""
    problems = []
    documented = documented_series()
    kind, scalable = kafkacluster_scale()

    def target_ok(where, ref):
        if ref.get("kind") != kind or ref.get("apiVersion") not in scalable:
            problems.append(f"{where}: scaleTargetRef must be a {kind} in {sorted(scalable)}, got {ref}")

    # KEDA: the CRD schema, then what the prometheus scaler requires.
    for err in jsonschema.Draft7Validator(keda_schema()).iter_errors(keda):
        problems.append(f"keda: {'/'.join(map(str, err.absolute_path))}: {err.message}")
    target_ok("keda", keda.get("spec", {}).get("scaleTargetRef", {}))
    for t in keda.get("spec", {}).get("triggers", []):
        if t.get("type") != "prometheus":
            continue
        md = t.get("metadata", {})
        for key in ("serverAddress", "query", "threshold"):
            if not md.get(key):
                problems.append(f"keda trigger {t.get('name')}: metadata.{key} is required")
        try:
            float(md.get("threshold", ""))
        except ValueError:
            problems.append(f"keda trigger {t.get('name')}: threshold {md.get('threshold')!r} is not a number")
        for s in SERIES.findall(md.get("query", "")):
            if s not in documented:
                problems.append(f"keda trigger {t.get('name')}: series {s} is not in docs/metrics.md")

    # prometheus-adapter.
    for err in jsonschema.Draft7Validator(ADAPTER_VALUES_SCHEMA).iter_errors(adapter):
        problems.append(f"adapter: {'/'.join(map(str, err.absolute_path))}: {err.message}")
    served = set()
    for rule in adapter.get("rules", {}).get("external", []) or []:
        series = SERIES.findall(rule.get("seriesQuery", ""))
        for s in series:
            if s not in documented:
                problems.append(f"adapter rule {rule.get('seriesQuery')}: series {s} is not in docs/metrics.md")
        matches = rule.get("name", {}).get("matches", "")
        try:
            if series and not re.search(matches, series[0]):
                problems.append(f"adapter rule: name.matches {matches!r} does not match {series[0]}")
        except re.error as e:
            problems.append(f"adapter rule: name.matches {matches!r}: {e}")
        for field in re.findall(r"<<\s*([^>]*?)\s*>>", rule.get("metricsQuery", "")):
            if field not in TEMPLATE_FIELDS:
                problems.append(f"adapter rule: metricsQuery uses <<{field}>>, not one of {sorted(TEMPLATE_FIELDS)}")
        served.add(rule.get("name", {}).get("as") or (series[0] if series else ""))

    # The HPA reads only what the adapter serves, and targets the KafkaCluster.
    target_ok("hpa", hpa.get("spec", {}).get("scaleTargetRef", {}))
    for m in hpa.get("spec", {}).get("metrics", []):
        if m.get("type") == "External":
            name = m["external"]["metric"]["name"]
            if name not in served:
                problems.append(f"hpa: external metric {name} is not served by the adapter rules {sorted(served)}")

    # Scale-down stabilisation: slow, one broker at a time, the same in both.
    hpa_behavior = hpa.get("spec", {}).get("behavior", {})
    keda_behavior = (
        keda.get("spec", {}).get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})
    )
    for where, b in (("hpa", hpa_behavior), ("keda", keda_behavior)):
        down = b.get("scaleDown", {})
        if down.get("stabilizationWindowSeconds", 0) < 300:
            problems.append(f"{where}: scaleDown.stabilizationWindowSeconds must be >= 300 so a drain is not undone by the next scale-up")
        pods = [p for p in down.get("policies", []) if p.get("type") == "Pods"]
        if down.get("selectPolicy") != "Min" or not pods or any(p["value"] > 1 for p in pods):
            problems.append(f"{where}: scaleDown must remove at most one broker per period (Pods policy of 1, selectPolicy Min)")
    if hpa_behavior != keda_behavior:
        problems.append("hpa and keda examples have different behavior; keep them the same")
    return problems


def self_test(hpa, adapter, keda):
    """Broken copies must be refused: the checks can fail."""
    failures = []

    def expect_problem(what, h, a, k):
        if not check(h, a, k):
            failures.append(f"self-test: {what} was not detected")

    k = copy.deepcopy(keda)
    del k["spec"]["scaleTargetRef"]
    expect_problem("a ScaledObject without scaleTargetRef", hpa, adapter, k)
    k = copy.deepcopy(keda)
    k["spec"]["minReplicaCount"] = "three"
    expect_problem("a string minReplicaCount", hpa, adapter, k)
    k = copy.deepcopy(keda)
    del k["spec"]["triggers"][0]["metadata"]["threshold"]
    expect_problem("a prometheus trigger without threshold", hpa, adapter, k)
    a = copy.deepcopy(adapter)
    a["rules"]["external"][0]["seriesQuery"] = "floe_produce_byte_total"
    expect_problem("an undocumented series", hpa, a, keda)
    a = copy.deepcopy(adapter)
    a["rules"]["external"][0]["metricQuery"] = a["rules"]["external"][0].pop("metricsQuery")
    expect_problem("a misspelt adapter field", hpa, a, keda)
    h = copy.deepcopy(hpa)
    h["spec"]["metrics"][0]["external"]["metric"]["name"] = "floe_bytes_in"
    expect_problem("an HPA metric the adapter does not serve", h, adapter, keda)
    h = copy.deepcopy(hpa)
    h["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = 0
    expect_problem("no scale-down stabilisation", h, adapter, keda)
    return failures


def main():
    hpa = load("hpa-external-metrics.yaml")
    adapter = load("prometheus-adapter-values.yaml")
    keda = load("keda-scaledobject.yaml")
    problems = check(hpa, adapter, keda)
    if "--self-test" in sys.argv:
        problems += self_test(hpa, adapter, keda)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print("autoscaling examples valid (KEDA schema, adapter rules, cross-references)")


if __name__ == "__main__":
    main()
