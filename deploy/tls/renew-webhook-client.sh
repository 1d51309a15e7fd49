#!/usr/bin/env bash
# Keeps the API server's audit-webhook client certificate on a control-plane node in step
# with the Secret cert-manager (or make-certs.sh) renews. Run it on every control-plane
# node, as root, from a systemd timer or cron (hourly is plenty: cert-manager renews a
# third of the lifetime before expiry):
#
#   deploy/tls/renew-webhook-client.sh [NAMESPACE] [RELEASE] [DIR]
#
# It reads the Secret <RELEASE>-apiserver-audit-client (tls.crt, tls.key, ca.crt) with
# kubectl (KUBECONFIG: a credential allowed to `get` that one Secret, e.g.
# /etc/kubernetes/admin.conf on kubeadm), checks it (the key matches the certificate, the
# certificate is valid for at least another hour and chains to ca.crt), and replaces the
# files in DIR (default /etc/kubernetes/credtrail) only when they differ: each written
# to a temporary file in DIR and renamed over the old one, the key mode 0600. ca.crt is
# also the CA the webhook kubeconfig trusts for the aggregator's serving certificate, so
# a CA rotation reaches the API server the same way.
#
# The API server's webhook client (client-go) re-reads certificate files given by path
# (`client-certificate`/`client-key` in the kubeconfig) when they change; on versions
# that do not, pass --restart: the script then moves the kube-apiserver static-pod
# manifest out and back so the kubelet restarts it (one API server at a time: run it on
# one node, wait for /readyz, then the next).
#
# Exit status: 0 unchanged or renewed, 1 usage, 2 the Secret is missing or invalid (the
# old files stay). Prints one line saying what it did.
set -euo pipefail
restart=0
args=()
for a in "$@"; do
  case "$a" in
    --restart) restart=1 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) args+=("$a") ;;
  esac
done
ns=${args[0]:-credtrail}
rel=${args[1]:-credtrail}
dir=${args[2]:-/etc/kubernetes/credtrail}
manifest=${CREDTRAIL_APISERVER_MANIFEST:-/etc/kubernetes/manifests/kube-apiserver.yaml}
secret="$rel-apiserver-audit-client"

umask 077
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.renew.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

for f in tls.crt tls.key ca.crt; do
  key=${f//./\\.}
  if ! kubectl -n "$ns" get secret "$secret" -o "jsonpath={.data.$key}" | base64 -d > "$tmp/$f" \
     || [ ! -s "$tmp/$f" ]; then
    echo "renew-webhook-client: secret $ns/$secret has no $f: old files kept" >&2
    exit 2
  fi
done

fail() { echo "renew-webhook-client: secret $ns/$secret: $1: old files kept" >&2; exit 2; }
openssl x509 -in "$tmp/tls.crt" -noout 2>/dev/null || fail "tls.crt is not a PEM certificate"
openssl x509 -in "$tmp/tls.crt" -noout -checkend 3600 >/dev/null || fail "tls.crt expires within the hour"
[ "$(openssl x509 -in "$tmp/tls.crt" -noout -pubkey | openssl sha256)" = \
  "$(openssl pkey -in "$tmp/tls.key" -pubout 2>/dev/null | openssl sha256)" ] \
  || fail "tls.key does not match tls.crt"
openssl verify -CAfile "$tmp/ca.crt" "$tmp/tls.crt" >/dev/null 2>&1 || fail "tls.crt does not chain to ca.crt"

changed=0
# The key and certificate go in together; ca.crt first so the new chain is trusted
# before the new leaf is presented.
for f in ca.crt tls.key tls.crt; do
  if ! cmp -s "$tmp/$f" "$dir/$f" 2>/dev/null; then
    chmod 0600 "$tmp/$f"
    [ "$f" = tls.key ] || chmod 0644 "$tmp/$f"
    mv -f "$tmp/$f" "$dir/$f"
    changed=1
  fi
done

if [ "$changed" = 0 ]; then
  echo "renew-webhook-client: $dir up to date (expires $(openssl x509 -in "$dir/tls.crt" -noout -enddate | cut -d= -f2))"
  exit 0
fi
echo "renew-webhook-client: $dir renewed (expires $(openssl x509 -in "$dir/tls.crt" -noout -enddate | cut -d= -f2))"
if [ "$restart" = 1 ] && [ -f "$manifest" ]; then
  parked="$(dirname "$(dirname "$manifest")")/$(basename "$manifest").credtrail-parked"
  mv "$manifest" "$parked"
  sleep 20
  mv "$parked" "$manifest"
  echo "renew-webhook-client: kube-apiserver static pod restarted"
fi
