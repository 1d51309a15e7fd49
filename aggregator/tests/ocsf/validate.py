#!/usr/bin/env python3
"""Validates OCSF Detection Findings (one JSON object per line) against the
OCSF schema shipped by the PyPI package pydantic-ocsf.

Two checks per finding, both from the package's own copy of the schema
(`ocsf/schemas/v<version>.json`, the OCSF project's export):

1. the package's Pydantic model (`ocsf.v<ver>.events.DetectionFinding`):
   types, required attributes, enum values, nested objects;
2. a strict walk of the same schema, because the package's models accept
   unknown attributes (extra="allow"): every attribute must exist in its
   class/object (inheritance resolved), have the dictionary's type and
   array-ness, a valid enum value with the matching caption sibling, no
   deprecated attribute, and the class/type uid arithmetic must hold.

Usage: validate.py <schema version, e.g. 1.7.0> <findings.jsonl>
Exit 0 when every line is valid; 1 with one message per problem otherwise.
"""

import importlib
import importlib.metadata
import json
import pathlib
import sys

STRING_TYPES = {
    "string_t", "hostname_t", "ip_t", "url_t", "username_t", "file_path_t",
    "uuid_t", "email_t", "mac_t", "subnet_t", "file_name_t", "process_name_t",
    "resource_uid_t", "datetime_t", "bytestring_t", "file_hash_t",
}
INT_TYPES = {"integer_t", "long_t", "timestamp_t", "port_t"}

# Enum siblings: `<x>_id` -> `<x>` caption attribute.
SIBLINGS = {
    "activity_id": "activity_name",
    "category_uid": "category_name",
    "class_uid": "class_name",
    "type_uid": "type_name",
    "severity_id": "severity",
    "status_id": "status",
    "type_id": "type",
}


class Schema:
    def __init__(self, version):
        import ocsf
        from ocsf._utils import extract_observable_type_ids

        path = pathlib.Path(ocsf.__file__).parent / "schemas" / f"v{version.replace('.', '_')}.json"
        self.raw = json.loads(path.read_text())
        self.version = version
        self.dictionary = self.raw["dictionary"]["attributes"]
        self.types = self.raw["dictionary"].get("types", {}).get("attributes", {})
        self.observable_types = {
            str(k): v for k, v in extract_observable_type_ids(self.raw).items()
        }

    def attributes(self, kind, name):
        table = self.raw["events" if kind == "event" else "objects"]
        spec = table[name]
        out = {}
        parent = spec.get("extends")
        if parent and parent in table:
            out.update(self.attributes(kind, parent))
        for k, v in spec.get("attributes", {}).items():
            if k.startswith("$") or not isinstance(v, dict):
                continue
            merged = dict(self.dictionary.get(k, {}))
            merged.update(v)
            out[k] = merged
        return out

    def base_type(self, t):
        seen = set()
        while t in self.types and t not in STRING_TYPES | INT_TYPES and t not in seen:
            seen.add(t)
            nxt = self.types[t].get("type")
            if not nxt or nxt == t:
                break
            t = nxt
        return t


def walk(schema, value, kind, name, path, errors):
    if not isinstance(value, dict):
        errors.append(f"{path}: expected an object ({name})")
        return
    attrs = schema.attributes(kind, name)
    for req, spec in attrs.items():
        if spec.get("requirement") == "required" and req not in value:
            errors.append(f"{path}.{req}: required by {name}, missing")
    for key, val in value.items():
        here = f"{path}.{key}"
        spec = attrs.get(key)
        if spec is None:
            errors.append(f"{here}: not an attribute of {name} in OCSF {schema.version}")
            continue
        if "@deprecated" in spec:
            errors.append(f"{here}: deprecated since {spec['@deprecated'].get('since')}")
        t = spec.get("object_type") or spec.get("type")
        items = val
        if spec.get("is_array"):
            if not isinstance(val, list):
                errors.append(f"{here}: expected an array")
                continue
        else:
            items = [val]
        for i, item in enumerate(items):
            ipath = f"{here}[{i}]" if spec.get("is_array") else here
            check_value(schema, item, t, spec, key, name, ipath, value, errors)


def check_value(schema, item, t, spec, key, owner, path, parent, errors):
    if t == "object" or t == "json_t":
        return
    if t in schema.raw["objects"]:
        walk(schema, item, "object", t, path, errors)
        return
    base = schema.base_type(t)
    if base in STRING_TYPES and not isinstance(item, str):
        errors.append(f"{path}: expected a string ({t})")
    elif base in INT_TYPES and (isinstance(item, bool) or not isinstance(item, int)):
        errors.append(f"{path}: expected an integer ({t})")
    elif base == "boolean_t" and not isinstance(item, bool):
        errors.append(f"{path}: expected a boolean")
    elif base == "float_t" and (isinstance(item, bool) or not isinstance(item, (int, float))):
        errors.append(f"{path}: expected a number")
    # The uids are checked by their arithmetic in check().
    enum = None if key in ("class_uid", "category_uid", "type_uid") else spec.get("enum")
    if owner == "observable" and key == "type_id":
        enum = {k: {"caption": v} for k, v in schema.observable_types.items()}
    if enum:
        if str(item) not in enum:
            errors.append(f"{path}: {item!r} is not one of {sorted(enum)}")
        else:
            sib = SIBLINGS.get(key)
            caption = enum[str(item)].get("caption")
            if sib and sib in parent and str(item) != "99" and parent[sib] != caption:
                errors.append(f"{path}: caption {parent[sib]!r} should be {caption!r}")


def check(schema, model, event):
    errors = []
    try:
        model.model_validate(event)
    except Exception as e:  # pydantic.ValidationError
        errors.append(f"pydantic-ocsf DetectionFinding: {e}")
    walk(schema, event, "event", "detection_finding", "$", errors)
    ev_table = schema.raw["events"]
    cls = ev_table["detection_finding"]
    cat_name, c = None, cls
    while c is not None and cat_name is None:
        cat_name = c.get("category")
        c = ev_table.get(c.get("extends") or "")
    cat = schema.raw["categories_meta"]["attributes"][cat_name]
    class_uid = cat["uid"] * 1000 + cls["uid"]
    if event.get("class_uid") != class_uid:
        errors.append(f"$.class_uid: {event.get('class_uid')} should be {class_uid}")
    if event.get("category_uid") != cat["uid"]:
        errors.append(f"$.category_uid: should be {cat['uid']}")
    if event.get("type_uid") != class_uid * 100 + (event.get("activity_id") or 0):
        errors.append("$.type_uid: should be class_uid * 100 + activity_id")
    if event.get("metadata", {}).get("version") != schema.version:
        errors.append(f"$.metadata.version: should be {schema.version}")
    return errors


def main():
    version, path = sys.argv[1], sys.argv[2]
    schema = Schema(version)
    events = importlib.import_module(f"ocsf.v{version.replace('.', '_')}.events")
    model = events.DetectionFinding
    bad = 0
    lines = [l for l in pathlib.Path(path).read_text().splitlines() if l.strip()]
    for n, line in enumerate(lines, 1):
        errs = check(schema, model, json.loads(line))
        for e in errs:
            print(f"line {n}: {e}")
        bad += bool(errs)
    pkg = importlib.metadata.version("pydantic-ocsf")
    print(f"{len(lines) - bad} of {len(lines)} findings valid against OCSF {version} (pydantic-ocsf {pkg})")
    sys.exit(1 if bad or not lines else 0)


if __name__ == "__main__":
    main()
