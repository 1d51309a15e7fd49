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
