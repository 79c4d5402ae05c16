//! Our printf against the VALs real gmond 3.7.2 printed (tests/fixtures/apr-printf/).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
use ganglia_wire::printf::format_to_vec;
use ganglia_wire::Value;

const CASES: &str = include_str!("../../../tests/fixtures/apr-printf/cases.jsonl");

fn value(case: &serde_json::Value) -> Value<'static> {
    let bits = || u64::from_str_radix(case["bits"].as_str().unwrap(), 16).unwrap();
    let int = || case["int"].as_i64().unwrap();
    match case["type"].as_str().unwrap() {
        "double" => Value::Double(f64::from_bits(bits())),
        "float" => Value::Float(f32::from_bits(bits() as u32)),
        "int" => Value::Int(int() as i32),
        "uint" => Value::UInt(int() as u32),
        "short" => Value::Short(int() as i16),
        "ushort" => Value::UShort(int() as u16),
        other => panic!("unknown type {other}"),
    }
}

#[test]
fn every_recorded_case_matches_real_gmond() {
    let mut failures = Vec::new();
    let mut n = 0;
    for line in CASES.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let fmt = case["fmt"].as_str().unwrap();
        let want = case["val"].as_str().unwrap();
        let got =
            String::from_utf8_lossy(&format_to_vec(fmt.as_bytes(), &value(&case))).into_owned();
        if got != want {
            failures.push(format!("{line}\n    ours: {got:?}"));
        }
        n += 1;
    }
    assert!(n > 500, "fixture table too small: {n}");
    assert!(
        failures.is_empty(),
        "{} of {n} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
