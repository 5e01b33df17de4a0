//! The shared validation table (`validation_cases.json`), replayed against the SDK itself. The
//! Python (`python/tests/test_validation_table.py`), Node (`node/test/validation.test.mjs`) and
//! C (`c/tests/test_validation.c`) suites replay the same file through their own APIs: all four
//! must accept and refuse the same inputs with the same messages.

use consul_sdk::{CheckType, Consistency, RegistrationSpec, Strategy};
use serde_json::Value;

fn table() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/validation_cases.json"))
        .expect("read validation_cases.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn expected(case: &Value) -> Option<String> {
    case["error"].as_str().map(str::to_string)
}

#[test]
fn registrations_match_the_table() {
    let t = table();
    let cases = t["registrations"].as_array().expect("registrations");
    assert!(cases.len() >= 10);
    for case in cases {
        let got = RegistrationSpec::from_json(&case["input"]).and_then(|s| s.resolve()).err().map(|e| e.message);
        assert_eq!(got, expected(case), "case {:?}", case["case"]);
    }
}

#[test]
fn options_match_the_table() {
    let t = table();
    for case in t["options"].as_array().expect("options") {
        let input = case["input"].as_str().expect("input");
        let got = match case["kind"].as_str().expect("kind") {
            "consistency" => input.parse::<Consistency>().err(),
            "strategy" => input.parse::<Strategy>().err(),
            "check" => input.parse::<CheckType>().err(),
            other => panic!("unknown option kind {other}"),
        }
        .map(|e| e.message);
        assert_eq!(got, expected(case), "case {:?}", case["case"]);
    }
}
