//! Self-tests of the linearizability checker on hand-written histories: it must flag planted
//! violations (or the suite proves nothing) and accept what a correct store may do.

use consul_tests::fault::{check_history, history::write_ops, CheckResult, Kind, Op, Output};

/// Builds an op on key `k`; `ret: None` is an unknown outcome.
fn op(client: usize, kind: Kind, output: Option<Output>, call_ms: i64, ret_ms: Option<i64>) -> Op {
    Op {
        client,
        key: "k".into(),
        kind,
        output,
        call_ns: call_ms * 1_000_000,
        return_ns: ret_ms.map(|r| r * 1_000_000),
        meta: String::new(),
    }
}

fn put(client: usize, v: &str, call: i64, ret: i64) -> Op {
    op(client, Kind::Put { value: v.into() }, Some(Output::Written(true)), call, Some(ret))
}

fn cas(client: usize, expected: &str, v: &str, ok: bool, call: i64, ret: i64) -> Op {
    op(client, Kind::Cas { expected: expected.into(), value: v.into() }, Some(Output::Written(ok)), call, Some(ret))
}

fn get(client: usize, v: &str, call: i64, ret: i64) -> Op {
    op(client, Kind::Get, Some(Output::Read(v.into())), call, Some(ret))
}

fn check(ops: &[Op]) -> consul_tests::fault::Verdict {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.json");
    write_ops(ops, &path).expect("write history");
    check_history(&path)
}

#[test]
fn valid_concurrent_history_passes() {
    let ops = [
        get(0, "", 0, 5),                // before any write: absent
        cas(1, "", "a", true, 1, 12),    // cas=0 on the absent key
        get(2, "", 2, 11),               // concurrent with the CAS: may still see it absent
        put(0, "b", 10, 20),             // concurrent with the CAS: ordered after it
        get(2, "a", 13, 14),             // between the CAS and the PUT
        cas(1, "a", "c", false, 21, 25), // "a" is gone
        get(3, "b", 22, 30),
        op(4, Kind::Get, Some(Output::Read("b".into())), 31, Some(31)),
    ];
    let v = check(&ops);
    assert_eq!(v.result, CheckResult::Ok, "{}", v.output);
    assert_eq!(v.ops, ops.len());
}

#[test]
fn stale_read_is_flagged() {
    // B's write completed before the read started, yet the read returned A.
    let ops = [put(0, "a", 0, 10), put(0, "b", 11, 20), get(1, "b", 21, 25), get(2, "a", 26, 30)];
    let v = check(&ops);
    assert_eq!(v.result, CheckResult::Illegal, "{}", v.output);
    assert_eq!(v.illegal().len(), 1);
    assert!(v.illegal()[0].detail.contains("get() -> \"a\""), "the stale read is named: {}", v.output);
}

#[test]
fn duplicate_application_is_flagged() {
    // Issue #12's story: PUT A applied, CAS A→B acknowledged, a later read returns A again
    // (A applied a second time).
    let ops = [put(0, "a", 0, 10), get(1, "a", 11, 12), cas(1, "a", "b", true, 13, 20), get(2, "a", 27, 30)];
    let v = check(&ops);
    assert_eq!(v.result, CheckResult::Illegal, "{}", v.output);
}

#[test]
fn cas_answered_false_but_applied_is_flagged() {
    // Issue #12's other story: a CAS that answered false, yet its value is what later reads return.
    let ops = [put(0, "a", 0, 10), cas(1, "a", "b", false, 11, 20), get(2, "b", 21, 25)];
    let v = check(&ops);
    assert_eq!(v.result, CheckResult::Illegal, "{}", v.output);
}

#[test]
fn unknown_write_is_accepted_either_way() {
    // A write that timed out may or may not have been applied; both continuations are fine...
    for seen in ["a", "b"] {
        let ops = [
            put(0, "a", 0, 10),
            op(1, Kind::Put { value: "b".into() }, None, 11, None),
            get(2, seen, 50, 60),
            get(2, seen, 61, 70),
        ];
        let v = check(&ops);
        assert_eq!(v.result, CheckResult::Ok, "reads see {seen:?}: {}", v.output);
    }
    // ...and so is an unknown CAS, applied or not...
    for seen in ["a", "c"] {
        let ops = [
            put(0, "a", 0, 10),
            op(1, Kind::Cas { expected: "a".into(), value: "c".into() }, None, 11, None),
            get(2, seen, 50, 60),
        ];
        let v = check(&ops);
        assert_eq!(v.result, CheckResult::Ok, "reads see {seen:?}: {}", v.output);
    }
    // ...but it cannot take effect before it was sent, nor flip back and forth.
    let before = [get(2, "b", 0, 5), op(1, Kind::Put { value: "b".into() }, None, 11, None)];
    assert_eq!(check(&before).result, CheckResult::Illegal);
    let flip = [
        put(0, "a", 0, 10),
        op(1, Kind::Put { value: "b".into() }, None, 11, None),
        get(2, "b", 50, 60),
        get(2, "a", 61, 70),
    ];
    assert_eq!(check(&flip).result, CheckResult::Illegal);
}
