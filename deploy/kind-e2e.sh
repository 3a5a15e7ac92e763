#!/usr/bin/env bash
# End to end on a throwaway kind (or k3d) cluster: build both images, load
# them, install the operator chart, create a KafkaCluster backed by a MinIO
# in the cluster, wait for Ready, produce and consume with kcat from a pod,
# scale the brokers 3 -> 5 -> 2 through the /scale subresource, and check
# that every message is still there. Needs docker, kind (or k3d with
# K8S=k3d), kubectl and helm on the PATH. Not run by scripts/test (no
# Kubernetes API server can run on the CI machines).
#
#   deploy/kind-e2e.sh            # kind
#   K8S=k3d deploy/kind-e2e.sh    # k3d
set -euo pipefail
cd "$(dirname "$0")/.."
K8S="${K8S:-kind}"
NAME="${CLUSTER_NAME:-floe-e2e}"
VERSION="$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="floe-operator"))')"
NS=streaming

log() { printf '\n== %s\n' "$*"; }

log "images floe:$VERSION and floe-operator:$VERSION"
docker build -f deploy/Dockerfile --target floe -t "floe:$VERSION" .
docker build -f deploy/Dockerfile --target operator -t "floe-operator:$VERSION" .

log "$K8S cluster $NAME"
if [ "$K8S" = k3d ]; then
    k3d cluster list "$NAME" >/dev/null 2>&1 || k3d cluster create "$NAME" --agents 3
    k3d image import -c "$NAME" "floe:$VERSION" "floe-operator:$VERSION"
else
    kind get clusters | grep -qx "$NAME" || kind create cluster --name "$NAME"
    kind load docker-image --name "$NAME" "floe:$VERSION" "floe-operator:$VERSION"
fi

log "MinIO for the object store"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" apply -f - <<YAML
apiVersion: v1
kind: Secret
metadata: {name: floe-s3}
stringData: {AWS_ACCESS_KEY_ID: floe, AWS_SECRET_ACCESS_KEY: floe-secret-key}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: minio}
spec:
  selector: {matchLabels: {app: minio}}
  template:
    metadata: {labels: {app: minio}}
    spec:
      containers:
      - name: minio
        image: quay.io/minio/minio:latest
        args: [server, /data]
        env:
        - {name: MINIO_ROOT_USER, value: floe}
        - {name: MINIO_ROOT_PASSWORD, value: floe-secret-key}
        ports: [{containerPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: minio}
spec:
  selector: {app: minio}
  ports: [{port: 9000}]
YAML
kubectl -n "$NS" rollout status deploy/minio --timeout=180s
kubectl -n "$NS" run mc --rm -i --restart=Never --image=quay.io/minio/mc:latest --command -- \
    sh -c 'mc alias set m http://minio:9000 floe floe-secret-key && mc mb -p m/floe-data'

log "operator"
helm upgrade --install floe-operator charts/floe-operator -n floe-system --create-namespace \
    --set image.repository=floe-operator --set image.tag="$VERSION" --wait

log "KafkaCluster"
kubectl -n "$NS" apply -f - <<YAML
apiVersion: floe.dev/v1alpha1
kind: KafkaCluster
metadata: {name: events}
spec:
  objectStorage:
    bucket: floe-data
    prefix: e2e
    region: us-east-1
    endpoint: http://minio.$NS.svc:9000
    credentialsSecret: {name: floe-s3}
  brokers:
    replicas: 3
    walMode: object
YAML
kubectl -n "$NS" wait kafkacluster/events --for=condition=Ready --timeout=600s

BOOT="events-bootstrap.$NS.svc:9092"
kcat_pod() { kubectl -n "$NS" run "kcat-$RANDOM" --rm -i --restart=Never --image=edenhill/kcat:1.7.1 -- "$@"; }

log "produce 1000 messages"
seq 1 1000 | kcat_pod -b "$BOOT" -P -t e2e -p -1
count() { kcat_pod -b "$BOOT" -C -t e2e -e -q | wc -l; }

for n in 5 2; do
    log "scale brokers to $n"
    kubectl -n "$NS" scale kafkacluster/events --replicas="$n"
    kubectl -n "$NS" wait kafkacluster/events --for=jsonpath='{.status.replicas}'="$n" --timeout=600s
    kubectl -n "$NS" wait kafkacluster/events --for=condition=Ready --timeout=600s
    got="$(count)"
    [ "$got" = 1000 ] || { echo "expected 1000 messages after scaling to $n, read $got"; exit 1; }
done
log "OK: 1000 messages through 3 -> 5 -> 2 brokers"
