//! AN1579 verdicts on binding writes the object of which cannot all be
//! read, and on bindings written with a role or subjects the stream shows
//! only in part (beside `an1579_tests.rs`, whose builders these use).

use serde_json::json;

use super::*;

#[test]
fn unreadable_subjects_of_a_binding_write_are_counted_and_named_in_the_alert() {
    let mut d = detector();
    // One subject whose name is a number, one that is not an object.
    let subjects = json!([
        {"apiGroup": G, "kind": "User", "name": 7},
        "mallory",
        {"apiGroup": G, "kind": "User", "name": "eve"},
    ]);
    let (a, ch) = judge(&mut d, grant("ub1", "odd", ADMIN, subjects));
    assert_eq!(ch.unreadable_fields, 2);
    assert_eq!(rules_of(&a), ["CT1579-001"], "{a:#?}");
    assert_eq!(a[0].details["unreadable_count"], 2);
    let named = a[0].details["unreadable"].to_string();
    assert!(named.contains("subjects[0].name"), "{named}");
    // A binding whose object reads whole names nothing unreadable.
    let (a, ch) = judge(&mut d, grant("ub2", "fine", ADMIN, users(&["eve"])));
    assert_eq!(ch.unreadable_fields, 0);
    assert!(
        a[0].details.get("unreadable").is_none(),
        "{:#}",
        a[0].details
    );
    assert!(a[0].details.get("unreadable_count").is_none());
}

#[test]
fn a_patch_that_does_not_apply_to_the_known_state_is_judged_against_the_known_role() {
    let mut d = detector();
    let (a, _) = judge(&mut d, grant("kp1", "ops", ADMIN, users(&["alice"])));
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    // Index 3 of a one-subject list: the known state is behind the cluster's,
    // so only what the patch adds is known, and the role is the known one.
    let add_eve = json!([{"op": "add", "path": "/subjects/3",
        "value": {"apiGroup": G, "kind": "User", "name": "eve"}}]);
    let (a, ch) = judge(&mut d, patch("kp2", "ops", add_eve));
    assert_eq!(rules_of(&a), ["CT1579-001"], "{a:#?}");
    assert_reason(&a[0], "high-privilege ClusterRole cluster-admin");
    assert_reason(&a[0], "eve");
    assert!(
        ch.unreadable_fields >= 1,
        "the patch that did not apply is named"
    );
}

#[test]
fn a_whole_object_logged_without_a_role_is_not_judged_under_the_old_one() {
    let mut d = detector();
    judge(&mut d, grant("kr1", "ops", ADMIN, users(&["alice"])));
    // An update logged at Request level whose body names no roleRef: what
    // the object says is all there is, the old role is not assumed.
    let mut up = Ev::new("kr2", "bob", NODE_IP).verb("update");
    up.name = Some("ops".into());
    up.level = "Request";
    up.request = Some(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "ops"}, "subjects": users(&["alice", "eve"]),
    }));
    let (a, _) = judge(&mut d, up);
    assert_eq!(rules_of(&a), ["CT1579-004"], "{a:#?}");
    assert_reason(&a[0], "role was never seen");
}

#[test]
fn a_patch_that_does_not_apply_adds_only_subjects_not_already_bound_under_that_role() {
    let mut d = detector();
    judge(&mut d, grant("kq1", "ops", ADMIN, users(&["alice"])));
    let again = |id: &str, role: Option<&str>, who: &str| {
        let mut ops = vec![json!({"op": "add", "path": "/subjects/5",
            "value": {"apiGroup": G, "kind": "User", "name": who}})];
        if let Some(r) = role {
            ops.insert(
                0,
                json!({"op": "replace", "path": "/roleRef",
                "value": {"apiGroup": G, "kind": "ClusterRole", "name": r}}),
            );
        }
        patch(id, "ops", json!(ops))
    };
    // alice is already bound to cluster-admin here: nothing new.
    let (a, _) = judge(&mut d, again("kq2", None, "alice"));
    assert!(a.is_empty(), "{a:#?}");
    // Under another role (the known state is stale): alice is new to it.
    let (a, _) = judge(&mut d, again("kq3", Some("admin"), "alice"));
    assert_eq!(rules_of(&a), ["CT1579-001"], "{a:#?}");
    assert_reason(&a[0], "ClusterRole admin");
}
