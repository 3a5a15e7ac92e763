#!/usr/bin/env bash
# Offline checks of everything Floe gives to a Kubernetes API server:
#
# - the generated CRD and the operator's golden renderings, against the
#   Kubernetes OpenAPI schemas (PyPI `kubernetes-validate`);
# - the Helm chart charts/floe-operator: lint, values schema, renderings with
#   several value sets, least-privilege RBAC, the CRD copy, and the examples
#   in charts/examples (charts/scripts/check_chart.py, through PyPI
#   `helm-python-sdk`: Helm's Go SDK, no helm binary), then the renderings
#   and the examples' built-in kinds against the Kubernetes schemas.
#
#   pip install -r e2e/requirements.txt
#   operator/scripts/validate-manifests.sh            # newest Kubernetes it knows
#   operator/scripts/validate-manifests.sh 1.33.0     # oldest one k8s-openapi targets
#
# This checks object shape (types, required and unknown fields); the CRD's CEL
# rules are evaluated by `cargo test -p floe-crds`, and the examples' specs by
# the operator's own validation in `cargo test -p floe-operator --test chart`.
set -euo pipefail
cd "$(dirname "$0")/../.."
version_args=()
if [[ $# -gt 0 ]]; then version_args=(-k "$1"); fi
PY="${PYTHON:-python3}"
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT

"$PY" charts/scripts/check_chart.py "$rendered"
kubernetes-validate --strict --quiet "${version_args[@]}" \
  crds/kafkacluster.yaml operator/tests/golden/*.yaml "$rendered"/*.yaml
echo "all manifests valid"
