//! The filter language table-driven: every operator against every field type, every endpoint's
//! selectors, and malformed input with the position each error points at.

use serde_json::{json, Value};

use super::schema::*;
use super::*;

fn entry() -> Value {
    json!({
        "Node": {"ID": "n-1", "Node": "node1", "Address": "10.0.0.1", "Datacenter": "dc1",
                 "TaggedAddresses": {"lan": "10.0.0.1"}, "Meta": {"rack": "r12", "env": ""},
                 "CreateIndex": 5, "ModifyIndex": 7},
        "Service": {"Kind": "", "ID": "web-1", "Service": "web", "Tags": ["primary", "v2"],
                    "Meta": {"version": "2"}, "Port": 8080, "Address": "", "TaggedAddresses": {},
                    "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false,
                    "Datacenter": "dc1", "CreateIndex": 9, "ModifyIndex": 9},
        "Checks": [
            {"Node": "node1", "CheckID": "serfHealth", "Name": "Serf", "Status": "passing", "Notes": "",
             "Output": "ok", "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
             "Interval": "", "Timeout": "", "ExposedPort": 0, "CreateIndex": 1, "ModifyIndex": 1},
            {"Node": "node1", "CheckID": "web-http", "Name": "HTTP", "Status": "critical", "Notes": "",
             "Output": "down", "ServiceID": "web-1", "ServiceName": "web", "ServiceTags": ["primary"],
             "Type": "http", "Interval": "10s", "Timeout": "1s", "ExposedPort": 0, "CreateIndex": 2,
             "ModifyIndex": 3},
        ],
    })
}

fn eval(expr: &str) -> bool {
    Filter::compile(expr, &SERVICE_ENTRY).unwrap_or_else(|e| panic!("{expr}: {e}")).matches(&entry())
}

fn error(expr: &str, schema: &Schema) -> String {
    Filter::compile(expr, schema).map(|_| ()).expect_err(expr).to_string()
}

/// Every operator, on the types it applies to (go-bexpr's `MatchOperator`s).
#[test]
fn operators_table() {
    let cases: &[(&str, bool)] = &[
        // strings
        ("Service.Service == web", true),
        ("Service.Service == \"web\"", true),
        ("Service.Service == `web`", true),
        ("Service.Service == Web", false),
        ("Service.Service != web", false),
        ("Service.ID contains \"eb-\"", true),
        ("\"eb-\" in Service.ID", true),
        ("\"zz\" not in Service.ID", true),
        ("Service.ID not contains web", false),
        ("Service.ID matches \"^web-[0-9]+$\"", true),
        ("Service.ID not matches \"^web\"", false),
        ("Service.Address is empty", true),
        ("Service.Address is not empty", false),
        ("Service.Kind is empty and Node.Node is not empty", true),
        // integers and booleans: the value is read as the field's type
        ("Service.Port == 8080", true),
        ("Service.Port == \"8080\"", true),
        ("Service.Port != 8080", false),
        ("Service.Weights.Passing == 1", true),
        ("Node.CreateIndex == 5", true),
        ("Service.EnableTagOverride == false", true),
        ("Service.EnableTagOverride == true", false),
        ("Service.EnableTagOverride != T", true),
        // lists of strings
        ("primary in Service.Tags", true),
        ("Service.Tags contains v2", true),
        ("Service.Tags contains v3", false),
        ("v3 not in Service.Tags", true),
        ("Service.Tags is empty", false),
        ("Service.TaggedAddresses is empty", true),
        // maps: keys with `.` or `["…"]`, `in` tests for a key
        ("Node.Meta.rack == r12", true),
        ("Node.Meta[\"rack\"] == \"r12\"", true),
        ("Node.Meta[`rack`] matches \"^r1\"", true),
        ("rack in Node.Meta", true),
        ("Node.Meta contains zone", false),
        ("Node.Meta.env is empty", true),
        // a missing key equals nothing, contains nothing, is empty
        ("Node.Meta.zone == a", false),
        ("Node.Meta.zone != a", true),
        ("Node.Meta.zone is empty", true),
        ("Node.Meta.zone is not empty", false),
        ("Node.Meta.zone matches \".*\"", false),
        ("Node.Meta.zone not matches \"x\"", true),
        ("Service.TaggedAddresses.lan.Port == 1", false),
        // lists of objects: any element
        ("Checks.Status == critical", true),
        ("Checks.Status == warning", false),
        ("Checks.Status != passing", true),
        ("Checks.CheckID == serfHealth and Checks.Output == down", true),
        ("Checks is not empty", true),
        ("primary in Checks.ServiceTags", true),
        // boolean structure and precedence: and binds tighter than or; not tighter than and
        ("Service.Port == 1 or Service.Port == 8080 and Node.Node == node1", true),
        ("(Service.Port == 1 or Service.Port == 8080) and Node.Node == node2", false),
        ("not Service.Port == 1", true),
        ("not not Service.Port == 1", false),
        ("not (Service.Port == 8080 and Node.Node == node1)", false),
        ("not Service.Port == 8080 or Node.Node == node1", true),
        ("((((Service.Port == 8080))))", true),
        ("Service.Port==8080 and(Node.Node==node1)", true),
        ("Service.Meta.version == 2", true),
        ("Service.Meta.version == 2.0", false),
        ("Node.Meta.rack\n  == r12", true),
    ];
    for (expr, want) in cases {
        assert_eq!(eval(expr), *want, "{expr}");
    }
}

#[test]
fn errors_point_at_their_position() {
    let cases: &[(&str, &str)] = &[
        ("", "1:1: empty expression"),
        ("Service.Port ==", "1:16: expected a value after \"==\""),
        ("Service.Port == 1 and", "1:22: expected a selector or a value"),
        ("(Service.Port == 1", "1:19: expected \")\" to close the \"(\" at 1:1"),
        ("Service.Port == 1)", "1:18: unmatched \")\""),
        ("Service.Port 1", "1:14: expected an operator"),
        ("Service.Port = 1", "1:14: expected \"==\""),
        ("Service.Port == x", "1:17: \"Service.Port\" is an integer, and \"x\" is not one"),
        ("Service.EnableTagOverride == yes", "1:30: \"Service.EnableTagOverride\" is a boolean"),
        ("Service.Tags == a", "1:14: operator \"==\" does not apply to \"Service.Tags\" (a list of strings)"),
        ("Service.Port contains 1", "1:14: operator \"contains\" does not apply"),
        ("Checks == a", "1:8: operator \"==\" does not apply to \"Checks\""),
        ("Service == a", "1:9: operator \"==\" does not apply to \"Service\" (an object): select one"),
        ("Service.ID matches \"(\"", "1:20: invalid regular expression"),
        ("Service.ID == \"abc", "1:15: unterminated string literal"),
        ("Node.Meta[rack] == a", "1:11: expected a quoted key"),
        ("Node.Meta[\"rack\" == a", "1:18: expected \"]\" to close the \"[\" at 1:10"),
        ("Node. == a", "1:5: expected a field name after \".\""),
        ("\"a\" == Service.ID", "1:1: expected a selector before \"==\""),
        ("a in \"b\"", "1:6: expected a selector after \"in\""),
        ("Service.ID is full", "1:12: expected \"is empty\" or \"is not empty\""),
        ("Service.Port.Foo == 1", "1:14: \"Service.Port\" is an integer and has no field \"Foo\""),
        ("Service.ID == a b", "1:17: expected \"and\", \"or\" or the end"),
        ("Service.ID == a\nand Service.Tag == b", "2:13"),
    ];
    for (expr, want) in cases {
        let got = error(expr, &SERVICE_ENTRY);
        assert!(got.contains(want), "{expr:?}: {got:?} should contain {want:?}");
    }
}

#[test]
fn unknown_selectors_name_close_fields() {
    let e = error("Service.Tag contains a", &SERVICE_ENTRY);
    assert!(e.contains("unknown selector \"Service.Tag\" at 1:9"), "{e}");
    assert!(e.contains("\"Tags\""), "{e}");
    let e = error("Bogus == 1", &NODE);
    assert!(e.contains("unknown selector \"Bogus\" at 1:1"), "{e}");
    // Nothing close: every valid name is listed.
    assert!(e.contains("\"ID\"") && e.contains("\"ModifyIndex\""), "{e}");
    // Case matters, as in Consul.
    assert!(error("node == a", &NODE).contains("\"Node\""));
    let converted: crate::Error = Filter::compile("x ==", &NODE).expect_err("bad").into();
    assert!(
        matches!(&converted, crate::Error::BadRequest(m) if m.starts_with("Failed to create boolean expression evaluator: "))
    );
}

#[test]
fn limits_refuse_deep_and_long_input() {
    let deep = format!("{}Node == a{}", "(".repeat(100), ")".repeat(100));
    assert!(error(&deep, &NODE).contains("nested more than 64"), "{}", error(&deep, &NODE));
    let nots = format!("{}Node == a", "not ".repeat(100));
    assert!(error(&nots, &NODE).contains("nested more than 64"));
    let ok = format!("{}Node == a{}", "(".repeat(60), ")".repeat(60));
    assert!(Filter::compile(&ok, &NODE).is_ok());
    let long = vec!["Node == a"; 8000].join(" or ");
    assert!(matches!(Filter::compile(&long, &NODE), Err(FilterError::TooLong { .. })));
    // Long flat chains are fine (n-ary, no recursion per term).
    let chain = vec!["Node == a"; 5000].join(" or ");
    assert!(Filter::compile(&chain, &NODE).expect("chain").matches(&json!({"Node": "a"})));
    // Arbitrary bytes never panic.
    for s in ["\u{0}", "é == é", "Node == \"\\u12\"", "[", "]", "Node[", "-", "--1", "Node == -", "0x1"] {
        let _ = Filter::compile(s, &NODE);
    }
}

/// Every selector of every endpoint compiles with each operator its type allows, and is
/// refused with one it does not.
#[test]
fn every_endpoint_selector_compiles() {
    for (endpoint, schema) in ENDPOINTS {
        for (sel, field) in schema.selectors() {
            let sel = sel.replace("<key>", "k");
            let (good, bad): (Vec<String>, Vec<String>) = match field {
                Field::String => (
                    vec![
                        format!("{sel} == x"),
                        format!("{sel} != \"x\""),
                        format!("x in {sel}"),
                        format!("{sel} not contains x"),
                        format!("{sel} matches \"^x\""),
                        format!("{sel} is not empty"),
                    ],
                    vec![],
                ),
                Field::Int => (vec![format!("{sel} == 1"), format!("{sel} != -2")], vec![format!("{sel} contains 1")]),
                Field::Bool => (vec![format!("{sel} == true")], vec![format!("{sel} is empty")]),
                Field::StringList | Field::Map(_) => {
                    (vec![format!("x in {sel}"), format!("{sel} is empty")], vec![format!("{sel} == x")])
                }
                Field::ObjectList(_) => (vec![format!("{sel} is empty")], vec![format!("{sel} == x")]),
                Field::Object(_) => (vec![], vec![format!("{sel} == x"), format!("{sel} is empty")]),
            };
            for e in good {
                assert!(
                    Filter::compile(&e, schema).is_ok(),
                    "{endpoint}: {e}: {:?}",
                    Filter::compile(&e, schema).err()
                );
            }
            for e in bad {
                assert!(Filter::compile(&e, schema).is_err(), "{endpoint}: {e} should be refused");
            }
        }
    }
}

#[test]
fn retain_filters_lists_and_maps() {
    let f = Filter::compile("Name == a", &MEMBER).expect("compile");
    let mut list = json!([{"Name": "a"}, {"Name": "b"}]);
    retain(&mut list, Some(&f));
    assert_eq!(list, json!([{"Name": "a"}]));
    let mut map = json!({"x": {"Name": "b"}, "y": {"Name": "a"}});
    retain(&mut map, Some(&f));
    assert_eq!(map, json!({"y": {"Name": "a"}}));
    assert!(from_query(Some("  "), &MEMBER).expect("empty").is_none());
    assert!(from_query(Some("Name =="), &MEMBER).is_err());
}

/// `docs/filter-selectors.md` is generated from the schemas (`UPDATE_FILTER_DOCS=1` rewrites it).
#[test]
fn filter_docs_match_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/filter-selectors.md");
    let want = selectors_markdown();
    if std::env::var_os("UPDATE_FILTER_DOCS").is_some() {
        std::fs::write(&path, &want).expect("write docs");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "docs/filter-selectors.md is stale: run with UPDATE_FILTER_DOCS=1");
}

/// Random token soup never panics: it compiles or is refused with a position, and what
/// compiles evaluates.
#[test]
fn random_input_never_panics() {
    use rand::{Rng, SeedableRng};
    const PIECES: &[&str] = &[
        "Service",
        "Checks",
        "Node",
        ".",
        "Meta",
        "[",
        "]",
        "\"rack\"",
        "`x`",
        "Tags",
        "Status",
        "Port",
        "==",
        "!=",
        "in",
        "not",
        "contains",
        "matches",
        "is",
        "empty",
        "and",
        "or",
        "(",
        ")",
        "1",
        "-2.5",
        "passing",
        "\"(\"",
        " ",
        "\n",
        "é",
        "\"",
        "=",
        "!",
        "Meta.rack",
        "Service.Port",
        "Checks.Status",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let item = entry();
    for _ in 0..20_000 {
        let n = rng.gen_range(1..12);
        let expr: String = (0..n).map(|_| PIECES[rng.gen_range(0..PIECES.len())]).collect::<Vec<_>>().join(" ");
        match Filter::compile(&expr, &SERVICE_ENTRY) {
            Ok(f) => {
                f.matches(&item);
            }
            Err(e) => assert!(e.to_string().contains(" at "), "{expr:?}: {e}"),
        }
    }
}
