"""Validate credtrail's deployment files offline.

* Kubernetes objects: kubernetes-validate (PyPI), strict, against the Kubernetes JSON schemas
  it ships, for every version in --k8s.
* cert-manager objects, the audit Policy and the webhook kubeconfig (no Kubernetes schema
  exists for them): JSON Schemas in schemas/, written from their upstream Go types.
* The Helm chart: rendered with Helm's own Go engine (helm-python-sdk binds Helm v4's SDK),
  linted, for each values file in --values, and each render validated as above.
* Container build files: parsed with Docker's own parser (the `dockerfile` package binds
  BuildKit's Go parser); every stage a COPY --from names must exist and the final stage must
  have an ENTRYPOINT. The parsed instructions are printed so the tests can compare them with
  the manifests.
* values.schema.json: each of REFUSED_VALUES must be refused by Helm's schema validation,
  naming its key; and the chart must refuse to render without createNamespace or a confirmed
  privileged namespace (podSecurity.confirmPrivilegedNamespace).
* --plain: the plain manifests must equal the chart rendered with plain-values.yaml
  (--write-plain regenerates them).

Prints one JSON object per line: {"source", "kind", "name", "validator", "ok", "errors"},
then a final {"summary": {...}}. Exit status 0 when everything passed.
"""

import argparse
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
RELEASE = "credtrail"
NAMESPACE = "credtrail"

# Without createNamespace the chart stops unless the namespace's Pod Security label is confirmed
# (it cannot look at a cluster here): the "defaults" render and the lint confirm it.
CONFIRMED = {"podSecurity": {"confirmPrivilegedNamespace": True}}

# Values the chart's values.schema.json must refuse (Helm validates values against it on
# install, upgrade, template and lint): (label, values, text the error must contain).
REFUSED_VALUES = [
    ("wrong-type", {"agent": {"spoolSizeLimitMiB": "256Mi"}}, "/agent/spoolSizeLimitMiB"),
    ("unknown-key", {"agent": {"spoolCapcity": 10}}, "spoolCapcity"),
    ("bad-enum", {"agent": {"hookMode": "kprobe"}}, "/agent/hookMode"),
    ("bad-digest", {"aggregator": {"image": {"digest": "sha256:1234"}}}, "/aggregator/image/digest"),
    ("namespaces-not-a-list", {"networkPolicy": {"prometheus": {"namespaces": "monitoring"}}},
     "/networkPolicy/prometheus/namespaces"),
    ("apparmor-localhost-without-profile", {"agent": {"appArmorProfile": {"type": "Localhost"}}},
     "/agent/appArmorProfile"),
    ("sys-admin", {"agent": {"capabilities": ["BPF", "SYS_ADMIN"]}}, "/agent/capabilities/1"),
    ("secret-in-args-type", {"aggregator": {"cloudInputs": {"firehose": {"accessKey": "x"}}}},
     "accessKey"),
]


def load_schema(name):
    with open(os.path.join(HERE, "schemas", name)) as f:
        return json.load(f)


OWN_SCHEMAS = {
    "audit": load_schema("audit-policy-v1.json"),
    "kubeconfig": load_schema("kubeconfig-v1.json"),
    "cert-manager": load_schema("cert-manager-v1.json"),
    "monitoring": load_schema("monitoring-coreos-v1.json"),
}


def own_schema_for(doc):
    api = str(doc.get("apiVersion", ""))
    kind = doc.get("kind")
    if api.startswith("audit.k8s.io/"):
        return "audit"
    if api == "v1" and kind == "Config":
        return "kubeconfig"
    if api.startswith("cert-manager.io/"):
        return "cert-manager"
    if api.startswith("monitoring.coreos.com/"):
        return "monitoring"
    return None


def validate_doc(doc, source, versions):
    """Yields one result per validator applied to `doc`."""
    kind = doc.get("kind", "?")
    name = (doc.get("metadata") or {}).get("name", "")
    own = own_schema_for(doc)
    if own:
        validator = jsonschema.Draft7Validator(OWN_SCHEMAS[own])
        errors = [
            f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in validator.iter_errors(doc)
        ]
        yield result(source, kind, name, f"schema:{own}", errors)
        return
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            errors = []
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.path) or "<root>"
            errors = [f"{path}: {e.message}"]
        except kubernetes_validate.SchemaNotFoundError as e:
            errors = [f"no Kubernetes schema for this kind: {e}"]
        except kubernetes_validate.InvalidSchemaError as e:
            errors = [f"invalid schema: {e}"]
        yield result(source, kind, name, f"kubernetes-{version}", errors)
    # Embedded files: the API server's audit policy and webhook kubeconfig travel in a ConfigMap.
    if kind == "ConfigMap":
        for key, text in (doc.get("data") or {}).items():
            if key.endswith((".yaml", ".yml")):
                for inner in load_all(text, f"{source}#{key}"):
                    if isinstance(inner, dict) and own_schema_for(inner):
                        yield from validate_doc(inner, f"{source}#{key}", versions)


def result(source, kind, name, validator, errors):
    return {
        "source": source,
        "kind": kind,
        "name": name,
        "validator": validator,
        "ok": not errors,
        "errors": errors,
    }


def load_all(text, source):
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise SystemExit(f"{source}: not YAML: {e}")


def check_unique_keys(text, source):
    """PyYAML keeps the last of duplicated mapping keys silently; Kubernetes rejects them."""

    class Strict(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        list(yaml.load_all(text, Loader=Strict))
        return []
    except yaml.YAMLError as e:
        return [f"{source}: {e}"]


def validate_text(text, source, versions):
    out = []
    dup = check_unique_keys(text, source)
    if dup:
        out.append(result(source, "?", "", "yaml", dup))
        return out
    for doc in load_all(text, source):
        if not isinstance(doc, dict):
            out.append(result(source, "?", "", "yaml", ["a document is not a mapping"]))
            continue
        out.extend(validate_doc(doc, source, versions))
    return out


def deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def refusal_checks(chart_dir):
    """The schema refuses each of REFUSED_VALUES, naming the key; and without a confirmed
    privileged namespace the chart refuses to render, saying how to fix it."""
    import helm_python as helm

    out = []
    for label, bad, expected in REFUSED_VALUES:
        errors = []
        try:
            render(chart_dir, deep_merge(CONFIRMED, bad))
            errors.append("rendered: the schema accepted it")
        except helm.HelmValuesError as e:
            if expected not in str(e):
                errors.append(f"refused without naming {expected!r}: {e}")
        except Exception as e:  # noqa: BLE001 - any other refusal is not the schema's
            errors.append(f"refused, but not by the schema: {type(e).__name__}: {e}")
        out.append(result(f"helm:refuse:{label}", "Chart", "credtrail", "schema-refuses", errors))
    errors = []
    try:
        render(chart_dir, {})
        errors.append("rendered without createNamespace or a confirmed privileged namespace")
    except helm.HelmRenderError as e:
        for needed in ("pod-security.kubernetes.io/enforce=privileged", "confirmPrivilegedNamespace"):
            if needed not in str(e):
                errors.append(f"the error does not say {needed!r}: {e}")
    out.append(result("helm:unconfirmed-namespace", "Chart", "credtrail", "pod-security-guard", errors))
    return out


def render(chart_dir, values):
    import helm_python as helm

    with helm.Chart.load(chart_dir) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    # Template path -> text, without empty renders.
    return {k: v for k, v in sorted(rendered.items()) if v.strip() and k.endswith(".yaml")}


def plain_files(chart_dir, plain_values):
    """The plain files the chart rendered with `plain_values` stands for: path -> text."""
    files = {}
    header = (
        "# Generated from deploy/helm/credtrail with deploy/helm/plain-values.yaml\n"
        "# (tests/tests/deploy_manifests.rs keeps it equal; regenerate with\n"
        "# CREDTRAIL_BLESS=1). Edit the chart, not this file.\n"
    )
    for template, text in render(chart_dir, plain_values).items():
        base = os.path.basename(template)
        files[f"manifests/{base}"] = header + text.lstrip("\n")
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "ConfigMap" and doc["metadata"]["name"].endswith(
                "-apiserver-audit"
            ):
                for key, inner in doc["data"].items():
                    files[f"audit/{key}"] = header + inner
    return files


def check_dockerfile(path, source):
    import dockerfile

    try:
        cmds = dockerfile.parse_file(path)
    except dockerfile.GoParseError as e:
        return result(source, "Dockerfile", os.path.basename(path), "dockerfile-parse", [str(e)])
    errors = []
    stages = set()
    final_entrypoint = None
    for c in cmds:
        if c.cmd == "FROM":
            final_entrypoint = None
            if len(c.value) == 3 and c.value[1].upper() == "AS":
                stages.add(c.value[2])
        elif c.cmd == "COPY":
            for flag in c.flags:
                if flag.startswith("--from=") and flag[7:] not in stages and ":" not in flag[7:]:
                    errors.append(f"COPY {flag}: no stage named {flag[7:]!r}")
        elif c.cmd == "ENTRYPOINT":
            final_entrypoint = c.value
    if not any(c.cmd == "FROM" for c in cmds):
        errors.append("no FROM")
    if not final_entrypoint:
        errors.append("the final stage has no ENTRYPOINT")
    r = result(source, "Dockerfile", os.path.basename(path), "dockerfile-parse", errors)
    # Instructions of the final stage only: what the image runs with.
    last_from = max(i for i, c in enumerate(cmds) if c.cmd == "FROM") if cmds else 0
    r["instructions"] = [
        {"cmd": c.cmd, "value": list(c.value), "flags": list(c.flags)} for c in cmds[last_from:]
    ]
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deploy", required=True, help="the deploy/ folder")
    ap.add_argument("--k8s", default="1.30.0,1.37.0")
    ap.add_argument("--values", action="append", default=[], help="extra values files to render")
    ap.add_argument("--file", action="append", default=[], help="validate only these files")
    ap.add_argument("--write-plain", action="store_true")
    ap.add_argument("--render", metavar="VALUES", help="print the chart rendered with VALUES")
    args = ap.parse_args()
    versions = args.k8s.split(",")
    deploy = args.deploy
    chart_dir = os.path.join(deploy, "helm", "credtrail")
    results = []

    if args.render:
        with open(args.render) as f:
            values = yaml.safe_load(f) or {}
        print(json.dumps({"rendered": render(chart_dir, values)}))
        return 0

    if args.file:
        for path in args.file:
            with open(path) as f:
                results.extend(validate_text(f.read(), path, versions))
        return finish(results)

    with open(os.path.join(deploy, "helm", "plain-values.yaml")) as f:
        plain_values = yaml.safe_load(f) or {}
    expected = plain_files(chart_dir, plain_values)
    if args.write_plain:
        for rel in ("manifests", "audit"):
            folder = os.path.join(deploy, rel)
            os.makedirs(folder, exist_ok=True)
            for name in os.listdir(folder):
                if name.endswith(".yaml"):
                    os.remove(os.path.join(folder, name))
        for rel, text in expected.items():
            with open(os.path.join(deploy, rel), "w") as f:
                f.write(text)

    # 1. The plain files as they are on disk.
    on_disk = {}
    for rel in ("manifests", "audit"):
        folder = os.path.join(deploy, rel)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name.endswith(".yaml"):
                with open(os.path.join(folder, name)) as f:
                    on_disk[f"{rel}/{name}"] = f.read()
    for rel, text in on_disk.items():
        results.extend(validate_text(text, f"deploy/{rel}", versions))

    # 2. They must be the chart's render.
    drift = sorted(
        rel for rel in set(expected) | set(on_disk) if expected.get(rel) != on_disk.get(rel)
    )
    results.append(
        result(
            "deploy/manifests",
            "-",
            "",
            "chart-equals-plain",
            [f"{rel} differs from the chart's render (regenerate with CREDTRAIL_BLESS=1)" for rel in drift],
        )
    )

    # 3. The container build files.
    docker_dir = os.path.join(deploy, "docker")
    for name in sorted(os.listdir(docker_dir)) if os.path.isdir(docker_dir) else []:
        if name.endswith(".Dockerfile"):
            results.append(check_dockerfile(os.path.join(docker_dir, name), f"deploy/docker/{name}"))

    # 4. The chart: lint, then render with each values file and validate.
    import helm_python as helm

    lint = helm.lint(chart_dir, CONFIRMED)
    errors = [str(e) for e in lint.get("errors") or []] + [
        f"{m.get('path')}: {m.get('error')}"
        for m in lint.get("messages") or []
        if m.get("severity", 0) >= 3
    ]
    results.append(result("deploy/helm/credtrail", "Chart", "credtrail", "helm-lint", errors))
    results.extend(refusal_checks(chart_dir))
    value_sets = [("defaults", CONFIRMED)]
    for path in args.values:
        with open(path) as f:
            value_sets.append((os.path.basename(path), yaml.safe_load(f) or {}))
    for label, values in value_sets:
        try:
            rendered = render(chart_dir, values)
        except Exception as e:  # Helm's render error names the template and line.
            results.append(result(f"helm:{label}", "Chart", "credtrail", "helm-render", [str(e)]))
            continue
        results.append(result(f"helm:{label}", "Chart", "credtrail", "helm-render", []))
        for template, text in rendered.items():
            results.extend(validate_text(text, f"helm:{label}:{template}", versions))
    return finish(results)


def finish(results):
    for r in results:
        print(json.dumps(r))
    failed = sum(1 for r in results if not r["ok"])
    print(json.dumps({"summary": {"checks": len(results), "failed": failed}}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
