//! Reading RBAC objects out of raw request/response JSON (`object.rs`):
//! what is read, what is skipped unread, and what is named unreadable.

use super::*;
use serde_json::json;

#[test]
fn odd_shapes_are_named_and_the_rest_is_read() {
    let v = json!({
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "x"},
        "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [
            {"kind": "User", "name": "bob"},
            {"kind": "User", "name": {"nested": true}},
            7
        ]
    });
    let o = read_object(&v, "responseObject");
    assert_eq!(o.role_ref.unwrap().name, "cluster-admin");
    let s = o.subjects.unwrap();
    assert_eq!(s.len(), 3, "unreadable subjects are kept as placeholders");
    assert_eq!(s[0].name, "bob");
    assert_eq!(s[1].kind, "Unreadable");
    assert_eq!(
        o.unreadable,
        [
            "responseObject.subjects[1].name: expected a string, found an object",
            "responseObject.subjects[2]: expected an object, found a number"
        ]
    );
    let o = read_object(&json!([{"op": "add"}]), "requestObject");
    assert_eq!(
        o.unreadable,
        ["requestObject: expected an object, found an array"]
    );
}

#[test]
fn rules_with_a_bad_list_are_skipped_and_named() {
    let v = json!({"rules": [
        {"verbs": ["get"], "resources": ["pods"], "apiGroups": [""]},
        {"verbs": "get", "resources": ["secrets"]}
    ]});
    let o = read_object(&v, "requestObject");
    assert_eq!(o.rules.unwrap().len(), 1);
    assert_eq!(
        o.unreadable,
        ["requestObject.rules[1].verbs: expected an array, found a string"]
    );
}

fn deep(n: usize) -> String {
    format!("{}1{}", "[".repeat(n), "]".repeat(n))
}

#[test]
fn fields_nested_past_the_parser_limit_cannot_hide_a_grant() {
    // A binding whose annotation-like field nests 500 deep, and one subject too.
    let text = format!(
        r#"{{"kind":"ClusterRoleBinding","metadata":{{"name":"x","labels":{{"a":{d}}}}},"extra":{d},"roleRef":{{"kind":"ClusterRole","name":"cluster-admin"}},"subjects":[{{"kind":"User","name":"eve"}},{d}]}}"#,
        d = deep(500)
    );
    let ev: crate::audit::AuditEvent = serde_json::from_str(&format!(
        r#"{{"level":"RequestResponse","auditID":"a","stage":"ResponseComplete","verb":"create","user":{{"username":"u"}},"requestObject":{text}}}"#
    ))
    .expect("the event itself parses");
    let mut u = Vec::new();
    let v = object_value(ev.request_object.as_ref().unwrap(), "requestObject", &mut u).unwrap();
    let o = read_object(&v, "requestObject");
    assert_eq!(o.role_ref.unwrap().name, "cluster-admin");
    let s = o.subjects.unwrap();
    assert_eq!(
        (s[0].name.as_str(), s[1].kind.as_str()),
        ("eve", "Unreadable")
    );
    assert_eq!(u.len(), 1, "{u:?}");
    assert!(
        u[0].starts_with("requestObject.subjects[1]: recursion limit"),
        "{u:?}"
    );
    // A JSON patch: deep values on unrelated paths are skipped unread.
    let patch = format!(
        r#"[{{"op":"add","path":"/metadata/labels/x","value":{d}}},{{"op":"add","path":"/subjects/-","value":{{"kind":"User","name":"eve"}}}}]"#,
        d = deep(500)
    );
    let raw: RawObject = serde_json::from_str(&patch).unwrap();
    let mut u = Vec::new();
    let v = object_value(&raw, "requestObject", &mut u).unwrap();
    assert!(u.is_empty(), "{u:?}");
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["value"]["name"], "eve");
}

#[test]
fn a_string_object_is_read_as_json_or_yaml() {
    let raw = RawObject::from_value(&json!(
        "kind: ClusterRoleBinding\nsubjects:\n- kind: User\n  name: eve\n"
    ));
    let v = object_value(&raw, "requestObject", &mut Vec::new()).unwrap();
    let o = read_object(&v, "requestObject");
    assert_eq!(o.subjects.unwrap()[0].name, "eve");
}

/// An object as it sits in an audit event: the raw JSON text the API server wrote.
fn raw(text: &str) -> RawObject {
    serde_json::from_str(text).expect("test objects are JSON")
}

/// The skeleton of `text` and what it named unreadable.
fn skeleton_of(text: &str) -> (Option<Value>, Vec<String>) {
    let mut u = Vec::new();
    let v = object_value(&raw(text), "requestObject", &mut u);
    (v, u)
}

#[test]
fn an_object_of_exactly_the_largest_size_is_read() {
    let head = r#"{"kind":"ClusterRoleBinding","subjects":[{"kind":"User","name":"eve"}],"x":""#;
    let pad = MAX_OBJECT_BYTES - head.len() - 2;
    let text = format!("{head}{}\"}}", "a".repeat(pad));
    assert_eq!(text.len(), MAX_OBJECT_BYTES);
    let (v, u) = skeleton_of(&text);
    assert!(u.is_empty(), "{u:?}");
    let o = read_object(&v.expect("read"), "requestObject");
    assert_eq!(o.subjects.unwrap()[0].name, "eve");
    // One byte more is named, not read. (An object, not a string: a string
    // that got past the bound would be read as YAML, slowly, and a mutant
    // of the bound would time out instead of failing.)
    let text = format!("{head}{}\"}}", "a".repeat(pad + 1));
    let (v, u) = skeleton_of(&text);
    assert!(v.is_none());
    assert_eq!(
        u,
        [format!(
            "requestObject: larger than {MAX_OBJECT_BYTES} bytes ({})",
            MAX_OBJECT_BYTES + 1
        )]
    );
}

#[test]
fn a_whole_object_replaced_by_a_json_patch_is_read_like_an_object() {
    // `kubectl patch --type=json -p '[{"op":"replace","path":"","value":{…}}]'`:
    // the new object's labels nest past the parser's limit; its grant is read.
    let patch = format!(
        r#"[{{"op":"replace","path":"","value":{{"kind":"ClusterRoleBinding","metadata":{{"name":"x","labels":{{"a":{d}}}}},"roleRef":{{"kind":"ClusterRole","name":"cluster-admin"}},"subjects":[{{"kind":"User","name":"eve"}}]}}}}]"#,
        d = deep(500)
    );
    let (v, u) = skeleton_of(&patch);
    assert!(u.is_empty(), "{u:?}");
    let v = v.unwrap();
    assert_eq!(v[0]["op"], "replace");
    let o = read_object(&v[0]["value"], "requestObject[0].value");
    assert_eq!(o.role_ref.unwrap().name, "cluster-admin");
    assert_eq!(o.subjects.unwrap()[0].name, "eve");
    // A replacement that is not an object is kept as written (the patch
    // reader names it): an array is not read as a nested patch, a string not
    // as a document.
    let (v, u) = skeleton_of(
        r#"[{"op":"replace","path":"","value":[{"op":"add","path":"/metadata/labels/x","value":1}]},{"op":"replace","path":"","value":"kind: ClusterRoleBinding"}]"#,
    );
    assert!(u.is_empty(), "{u:?}");
    let v = v.unwrap();
    assert_eq!(
        v[0]["value"],
        serde_json::json!([{"op":"add","path":"/metadata/labels/x","value":1}])
    );
    assert_eq!(v[1]["value"], "kind: ClusterRoleBinding");
}

#[test]
fn subjects_and_rules_replaced_by_a_json_patch_are_read_item_by_item() {
    let patch = format!(
        r#"[{{"op":"replace","path":"/subjects","value":[{{"kind":"User","name":"eve"}},{d}]}},{{"op":"replace","path":"/rules","value":[{{"verbs":["*"],"apiGroups":["*"],"resources":["*"]}},{d}]}}]"#,
        d = deep(500)
    );
    let (v, u) = skeleton_of(&patch);
    let v = v.unwrap();
    // The unreadable subject stays as a placeholder; the unreadable rule is
    // dropped; both are named.
    assert_eq!(
        v[0]["value"],
        serde_json::json!([{"kind": "User", "name": "eve"}, {"kind": "Unreadable", "name": "requestObject[0].value[1]"}])
    );
    assert_eq!(
        v[1]["value"],
        serde_json::json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}])
    );
    assert_eq!(u.len(), 2, "{u:?}");
    assert!(
        u[0].starts_with("requestObject[0].value[1]: recursion limit"),
        "{u:?}"
    );
    assert!(
        u[1].starts_with("requestObject[1].value[1]: recursion limit"),
        "{u:?}"
    );
}

#[test]
fn an_unreadable_rule_of_an_object_is_dropped_not_made_a_rule() {
    let text = format!(
        r#"{{"kind":"ClusterRole","metadata":{{"name":"r"}},"rules":[{{"verbs":["get"],"resources":["pods"]}},{d}]}}"#,
        d = deep(500)
    );
    let (v, u) = skeleton_of(&text);
    let o = read_object(&v.unwrap(), "requestObject");
    let rules = o.rules.unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].resources, ["pods"]);
    assert_eq!(u.len(), 1, "{u:?}");
    assert!(
        u[0].starts_with("requestObject.rules[1]: recursion limit"),
        "{u:?}"
    );
}

#[test]
fn strategic_merge_directives_mark_the_merge_without_reading_their_content() {
    // Content past the parser's limit under a directive hides nothing and is
    // not named; `$patch` itself is read.
    let text = format!(
        r#"{{"$setElementOrder/subjects":{d},"$retainKeys":{d},"$deleteFromPrimitiveList/x":{d},"metadata":{{"name":"b","$patch":"replace"}},"$patch":"delete","subjects":[{{"kind":"User","name":"eve"}}]}}"#,
        d = deep(500)
    );
    let (v, u) = skeleton_of(&text);
    assert!(u.is_empty(), "{u:?}");
    let v = v.unwrap();
    for k in [
        "$setElementOrder/subjects",
        "$retainKeys",
        "$deleteFromPrimitiveList/x",
    ] {
        assert_eq!(v[k], true, "{k}: {v}");
    }
    assert_eq!(v["$patch"], "delete");
    assert_eq!(v["metadata"]["$patch"], "replace");
    assert_eq!(v["metadata"]["name"], "b");
    assert_eq!(v["subjects"][0]["name"], "eve");
}

#[test]
fn a_subject_with_any_unreadable_field_is_a_placeholder() {
    let mut u = Vec::new();
    let s = read_subject(
        &serde_json::json!({"kind": "ServiceAccount", "name": "ci", "namespace": 7}),
        "requestObject.subjects[0]",
        &mut u,
    );
    assert_eq!(
        (s.kind.as_str(), s.name.as_str(), s.namespace),
        ("Unreadable", "requestObject.subjects[0]", None)
    );
    assert_eq!(
        u,
        ["requestObject.subjects[0].namespace: expected a string, found a number"]
    );
    // A missing kind or name is named once.
    let mut u = Vec::new();
    let s = read_subject(&serde_json::json!({"name": "eve"}), "s[1]", &mut u);
    assert_eq!(s.kind, "Unreadable");
    assert_eq!(u, ["s[1]: kind or name missing"]);
    // A namespace is kept; an empty one is no namespace.
    let mut u = Vec::new();
    let sa = |ns: &str, u: &mut Vec<String>| {
        read_subject(
            &serde_json::json!({"kind": "ServiceAccount", "name": "ci", "namespace": ns}),
            "s",
            u,
        )
        .namespace
    };
    assert_eq!(sa("build", &mut u).as_deref(), Some("build"));
    assert_eq!(sa("", &mut u), None);
    assert!(u.is_empty(), "{u:?}");
}

/// A YAML string an attacker nests to stall the scanner (its cost is
/// depth × length) is named unreadable, not parsed; JSON of any nesting
/// is not affected by the YAML limits.
#[test]
fn a_yaml_nesting_bomb_is_named_not_parsed() {
    for (text, says) in [
        (
            format!("rules: {}", "[".repeat(100_000)),
            "100000 flow brackets",
        ),
        (
            format!("kind: Role\nx: \"{}\"\n", "a".repeat(MAX_YAML_BYTES)),
            "larger than 262144 bytes",
        ),
    ] {
        let mut unreadable = Vec::new();
        let raw = RawObject::from_value(&json!(text));
        assert_eq!(object_value(&raw, "requestObject", &mut unreadable), None);
        assert_eq!(unreadable.len(), 1, "{unreadable:?}");
        assert!(
            unreadable[0].starts_with("requestObject: a YAML string"),
            "{unreadable:?}"
        );
        assert!(unreadable[0].contains(says), "{unreadable:?}");
    }
    // Exactly MAX_YAML_FLOW_OPENERS brackets: 170 rules of 3, the list's `[`
    // and `metadata: {}`.
    let within = format!(
        "kind: Role\nmetadata: {{}}\nrules: [{}]\n",
        vec!["{verbs: [get], resources: [pods]}"; 170].join(", ")
    );
    assert_eq!(
        within.bytes().filter(|b| matches!(b, b'[' | b'{')).count(),
        MAX_YAML_FLOW_OPENERS
    );
    let mut unreadable = Vec::new();
    let v = object_value(
        &RawObject::from_value(&json!(within)),
        "requestObject",
        &mut unreadable,
    );
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert_eq!(
        read_object(&v.unwrap(), "requestObject")
            .rules
            .unwrap()
            .len(),
        170
    );
}

/// A YAML string of exactly MAX_YAML_BYTES is read; one byte more is not.
#[test]
fn a_yaml_string_of_exactly_the_largest_size_is_read() {
    let head = "kind: RoleBinding\nsubjects:\n- kind: User\n  name: eve\n#";
    let exact = format!("{head}{}", "a".repeat(MAX_YAML_BYTES - head.len()));
    assert_eq!(exact.len(), MAX_YAML_BYTES);
    let mut unreadable = Vec::new();
    let v = object_value(
        &RawObject::from_value(&json!(exact)),
        "requestObject",
        &mut unreadable,
    );
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert_eq!(
        read_object(&v.unwrap(), "requestObject").subjects.unwrap()[0].name,
        "eve"
    );
    let over = format!("{exact}a");
    let v = object_value(
        &RawObject::from_value(&json!(over)),
        "requestObject",
        &mut unreadable,
    );
    assert_eq!(v, None);
    assert_eq!(
        unreadable,
        [format!(
            "requestObject: a YAML string larger than {MAX_YAML_BYTES} bytes ({}): not read",
            MAX_YAML_BYTES + 1
        )]
    );
}
