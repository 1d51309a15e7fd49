#!/usr/bin/env bash
# The plain-Secret alternative to cert-manager: make a private CA, the aggregator's serving
# certificate and the API server's audit-webhook client certificate, and write them as
# Kubernetes Secrets (tls.crt, tls.key, ca.crt: the layout cert-manager produces, so the
# Deployment mounts them unchanged). Agents need none: they present their node's kubelet
# client certificate (docs/OPERATIONS.md).
#
#   deploy/tls/make-certs.sh OUT_DIR [NAMESPACE] [RELEASE]
#
# OUT_DIR receives the PEM files (keep the CA key offline: it signs renewed certificates)
# and secrets.yaml, to `kubectl apply -f OUT_DIR/secrets.yaml` instead
# of deploy/manifests/tls-cert-manager.yaml. Nothing is printed but file names.
set -euo pipefail
out=${1:?usage: make-certs.sh OUT_DIR [NAMESPACE] [RELEASE]}
ns=${2:-credtrail}
rel=${3:-credtrail}
days=${CREDTRAIL_CERT_DAYS:-90}
svc="$rel-aggregator"
mkdir -p "$out"
umask 077
cd "$out"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=credtrail-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.crt

# leaf NAME CN EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
leaf() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$3"
    if [ -n "${4:-}" ]; then echo "subjectAltName=$4"; fi
  } > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
    -days "$days" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

leaf aggregator "$svc.$ns.svc" serverAuth \
  "DNS:$svc,DNS:$svc.$ns,DNS:$svc.$ns.svc,DNS:$svc.$ns.svc.cluster.local"
leaf webhook-client kube-apiserver-audit clientAuth

b64() { base64 -w0 < "$1"; }
secret() { # NAME FILE_PREFIX
  cat <<YAML
---
apiVersion: v1
kind: Secret
metadata:
  name: $1
  namespace: $ns
  labels:
    app.kubernetes.io/part-of: credtrail
    app.kubernetes.io/instance: $rel
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$2.crt")
  tls.key: $(b64 "$2.key")
  ca.crt: $(b64 ca.crt)
YAML
}
{
  secret "$rel-aggregator-tls" aggregator
  secret "$rel-apiserver-audit-client" webhook-client
} > secrets.yaml
echo "$out/secrets.yaml"
