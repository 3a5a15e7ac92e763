#!/usr/bin/env bash
# Validate the generated CRD and the operator's golden renderings against the
# Kubernetes OpenAPI schemas, offline, with PyPI `kubernetes-validate`:
#
#   pip install kubernetes-validate
#   operator/scripts/validate-manifests.sh            # newest Kubernetes it knows
#   operator/scripts/validate-manifests.sh 1.33.0     # oldest one k8s-openapi targets
#
# This checks object shape (types, required and unknown fields); the CRD's CEL
# rules are evaluated by `cargo test -p floe-crds` instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
version_args=()
if [[ $# -gt 0 ]]; then version_args=(-k "$1"); fi
kubernetes-validate --strict --quiet "${version_args[@]}" \
  crds/kafkacluster.yaml operator/tests/golden/*.yaml
echo "all manifests valid"
