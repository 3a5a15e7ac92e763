#!/usr/bin/env bash
# Validate the autoscaling examples (charts/examples/autoscaling/) offline:
#
#   spot/scripts/validate-examples.sh            # newest Kubernetes kubernetes-validate knows
#   spot/scripts/validate-examples.sh 1.33.0     # a given Kubernetes version for the HPA
#
# - the HPA against the Kubernetes OpenAPI schemas (PyPI kubernetes-validate);
# - the KEDA ScaledObject against KEDA's published CRD schema, the
#   prometheus-adapter rules against the adapter's config types, and the
#   cross-references between them and docs/metrics.md
#   (spot/scripts/validate_examples.py, PyPI jsonschema + PyYAML, which
#   kubernetes-validate installs), including a self-test on broken copies.
#
# Uses e2e/.venv when it exists (scripts/test creates it), else what is on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -x e2e/.venv/bin/python ]]; then
  export PATH="$PWD/e2e/.venv/bin:$PATH"
fi
version_args=()
if [[ $# -gt 0 ]]; then version_args=(-k "$1"); fi
kubernetes-validate --strict --quiet "${version_args[@]}" \
  charts/examples/autoscaling/hpa-external-metrics.yaml
python3 spot/scripts/validate_examples.py --self-test
echo "autoscaling examples valid"
