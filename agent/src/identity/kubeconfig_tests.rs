//! Kubeconfigs a pod wrote: what makes a file a kubeconfig, referenced
//! files read only through the reader given, and the field cap at the byte.

use std::collections::HashMap;

use super::*;
use crate::identity::sha256_hex;

struct Files(HashMap<&'static str, &'static [u8]>);
impl RefReader for Files {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.0.get(path).map(|b| b.to_vec())
    }
}

/// Any one of clusters, contexts or users makes a kubeconfig; `kind` may be
/// absent but, when present, must be `Config`.
#[test]
fn one_section_is_enough_and_the_kind_must_be_config() {
    let k = kubeconfig_identity(
        "clusters:\n- name: a\n  cluster: {server: 'https://a:6443'}\n",
        &NoRefs,
    )
    .unwrap();
    assert_eq!(k.servers, vec!["https://a:6443".to_string()]);
    assert!(k.users.is_empty());
    let k =
        kubeconfig_identity("contexts:\n- name: c\n  context: {cluster: a}\n", &NoRefs).unwrap();
    assert_eq!(k, KubeconfigIdentity::default());
    let k = kubeconfig_identity("kind: Config\nusers:\n- name: u\n  user: {}\n", &NoRefs).unwrap();
    assert_eq!(k.users.len(), 1);
    assert_eq!(k.users[0].name, "u");
    assert!(matches!(
        kubeconfig_identity("kind: Secret\nusers:\n- name: u\n  user: {}\n", &NoRefs),
        Err(KubeconfigError::Kind)
    ));
    assert!(matches!(
        kubeconfig_identity(
            "kind: Config\nclusters: []\ncontexts: []\nusers: []\n",
            &NoRefs
        ),
        Err(KubeconfigError::NoContent)
    ));
}

#[test]
fn an_empty_current_context_is_none() {
    let k = kubeconfig_identity(
        "current-context: ''\nusers:\n- name: u\n  user: {}\n",
        &NoRefs,
    )
    .unwrap();
    assert_eq!(k.current_context, None);
    let k = kubeconfig_identity(
        "current-context: prod\nusers:\n- name: u\n  user: {}\n",
        &NoRefs,
    )
    .unwrap();
    assert_eq!(k.current_context.as_deref(), Some("prod"));
}

/// `client-certificate` and `tokenFile` are read only through the reader:
/// without one, they are named by nothing and fail nothing.
#[test]
fn referenced_files_are_read_only_through_the_reader() {
    let text = "users:\n- name: kubelet\n  user:\n    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n    tokenFile: /var/run/secrets/tok\n";
    let k = kubeconfig_identity(text, &NoRefs).unwrap();
    assert_eq!(k.users.len(), 1);
    assert_eq!(k.users[0].client_certificate, None);
    assert_eq!(k.users[0].token, None);
    let files = Files(HashMap::from([
        ("/var/run/secrets/tok", &b"\n  opaque-file-token \n"[..]),
        (
            "/var/lib/kubelet/pki/kubelet-client-current.pem",
            &b"not a pem"[..],
        ),
    ]));
    // A referenced certificate that is no PEM fails the file, naming the user.
    let e = kubeconfig_identity(text, &files).unwrap_err();
    assert_eq!(
        e.to_string(),
        "user \"kubelet\": client certificate: PEM holds no certificate and no private key"
    );
    let only_token = "users:\n- name: bot\n  user:\n    tokenFile: /var/run/secrets/tok\n";
    let k = kubeconfig_identity(only_token, &files).unwrap();
    assert_eq!(
        k.users[0].token.as_ref().unwrap().sha256,
        sha256_hex(b"opaque-file-token")
    );
    // A blank token (inline or in its file) is no token.
    let blank = Files(HashMap::from([("/var/run/secrets/tok", &b" \n"[..])]));
    assert_eq!(
        kubeconfig_identity(only_token, &blank).unwrap().users[0].token,
        None
    );
    let k = kubeconfig_identity("users:\n- name: b\n  user: {token: '  '}\n", &NoRefs).unwrap();
    assert_eq!(k.users[0].token, None);
    // An inline token wins over tokenFile.
    let both =
        "users:\n- name: bot\n  user:\n    token: inline\n    tokenFile: /var/run/secrets/tok\n";
    let k = kubeconfig_identity(both, &files).unwrap();
    assert_eq!(
        k.users[0].token.as_ref().unwrap().sha256,
        sha256_hex(b"inline")
    );
}

#[test]
fn fields_are_cut_at_the_cap_on_a_character_boundary() {
    let exact = "a".repeat(MAX_FIELD);
    assert_eq!(cap(exact.clone()), exact);
    assert_eq!(cap("a".repeat(MAX_FIELD + 1)), format!("{exact}…"));
    // A two-byte character across the cap is left out whole.
    let s = format!("{}é{}", "a".repeat(MAX_FIELD - 1), "b".repeat(10));
    assert_eq!(cap(s), format!("{}…", "a".repeat(MAX_FIELD - 1)));
    assert_eq!(cap(String::from("short")), "short");
    assert_eq!(MAX_FIELD, 256);
    // Through the parser: a server of exactly the cap is kept whole.
    let server = format!("https://{}", "s".repeat(MAX_FIELD - 8));
    let k = kubeconfig_identity(
        &format!("clusters:\n- name: c\n  cluster: {{server: '{server}'}}\n"),
        &NoRefs,
    )
    .unwrap();
    assert_eq!(k.servers, vec![server]);
}

/// The parser's messages quote the document; what is kept is the kind of
/// problem, a field name of our own schema, and the position.
#[test]
fn yaml_errors_say_the_kind_of_problem_and_where() {
    let msg = |d: &str| kubeconfig_identity(d, &NoRefs).unwrap_err().to_string();
    let yaml = |m: &str| format!("kubeconfig is not valid YAML for a Config: {m}");
    assert_eq!(
        msg("users:\n- name: a\n  name: b\n"),
        yaml("duplicate field `name` at line 2 column 3")
    );
    assert_eq!(
        msg(
            "users:\n- name: a\n  user:\n    client-certificate-data: x\n    client-certificate-data: y\n"
        ),
        yaml("duplicate field `client-certificate-data` at line 4 column 5")
    );
    assert_eq!(
        msg("users: 3\n"),
        yaml("a field has the wrong type at line 1 column 8")
    );
    assert_eq!(
        msg("current-context: !!null hunter2\n"),
        yaml("a field has an invalid value at line 1 column 1")
    );
    assert_eq!(
        msg("users:\n- name: &a x\n- name: *hunter2\n"),
        yaml("unexpected content at line 3 column 9")
    );
    assert_eq!(
        msg("current-context: \"\\xZZ\"\n"),
        yaml("syntax error at line 1 column 21")
    );
}

/// A pod-written nesting bomb (the YAML scanner's cost is depth × length) is
/// refused before parsing, by its count of flow brackets, quoted or not; a
/// kubeconfig with up to the cap of them in flow style still parses.
#[test]
fn a_nesting_bomb_is_refused_unparsed_and_flow_style_within_the_cap_parses() {
    for bomb in [
        format!("contexts: {}\n", "[".repeat(100_000)),
        format!(
            "users:\n- name: \"{}\"\n  user: {{}}\n",
            "{".repeat(MAX_FLOW_OPENERS)
        ),
    ] {
        let e = kubeconfig_identity(&bomb, &NoRefs).unwrap_err();
        assert!(
            matches!(e, KubeconfigError::FlowBrackets(n) if n > MAX_FLOW_OPENERS),
            "{e}"
        );
        assert!(e.to_string().contains("more than 512"), "{e}");
    }
    // MAX_FLOW_OPENERS brackets in all: 255 users `{name: uN, user: {}}` plus
    // the list's own `[` and one `{}`.
    let users: Vec<String> = (0..255)
        .map(|i| format!("{{name: u{i}, user: {{}}}}"))
        .collect();
    let text = format!("preferences: {{}}\nusers: [{}]\n", users.join(", "));
    assert_eq!(
        text.bytes().filter(|b| matches!(b, b'[' | b'{')).count(),
        MAX_FLOW_OPENERS
    );
    let k = kubeconfig_identity(&text, &NoRefs).unwrap();
    assert_eq!(k.users.len(), MAX_ENTRIES);
}
