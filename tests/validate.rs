//! `validate`: the CSV checked offline, with row, column and reason.

mod common;

use common::*;

fn validate(run: &Run, content: &str, extra: &[&str]) -> std::process::Output {
    let input = run.write("in.csv", content);
    let mut c = run.cmd();
    // No token and no network: validate must not need either.
    c.env_remove("OKTA_CLIENT_TOKEN")
        .arg("validate")
        .arg("--input")
        .arg(&input)
        .args(extra);
    c.output().unwrap()
}

#[test]
fn every_bad_row_is_named_with_its_row_column_and_reason() {
    let run = Run::new();
    let out = validate(
        &run,
        "login;phone\n\
         ana@example.com;+1 213 555 0101\n\
         ;+1 213 555 0102\n\
         bo@example.com;4.4770090012E+11\n\
         cy@example.com;(213) 555-0104\n\
         di@example.com;+1 555 123 4567\n\
         \n\
         eve@example.com;+1 213 555 0105\n\
         EVE@example.com;+1 213 555 0199\n",
        &[],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stdout(&out);
    let line_of = |row: u32| -> String {
        text.lines()
            .find(|l| l.starts_with(&format!("row {row}:")))
            .unwrap_or_else(|| panic!("no line for row {row} in:\n{text}"))
            .to_string()
    };
    assert!(
        line_of(2).contains("invalid") && line_of(2).contains("user is empty"),
        "{text}"
    );
    assert!(line_of(3).contains("scientific notation"), "{text}");
    assert!(line_of(4).contains("--default-region"), "{text}");
    assert!(
        line_of(5).contains("invalid") && line_of(5).contains("phone"),
        "{text}"
    );
    // The blank line is not a row; rows 6 and 7 name eve twice with
    // different numbers (logins compare without case): a conflict.
    assert!(line_of(6).contains("conflict"), "{text}");
    assert!(line_of(7).contains("conflict"), "{text}");
    assert!(!text.contains("row 1:"), "row 1 is fine: {text}");
}

#[test]
fn a_clean_file_exits_0_and_duplicates_are_not_errors() {
    let run = Run::new();
    let out = validate(
        &run,
        "user_id,new_phone\n00u1abc0000000000011,+12135550111\n00u1abc0000000000011,+12135550111\n",
        &[],
    );
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("row 2: duplicate: duplicate of row 1"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_unusable_file_exits_2() {
    let run = Run::new();
    let out = validate(&run, "name,notes\nx,y\n", &[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no user column"), "{}", stderr(&out));
    let mut c = run.cmd();
    let p = run.path("utf16.csv");
    std::fs::write(&p, b"\xff\xfeu\0s\0e\0r\0").unwrap();
    let out = c.args(["validate", "--input"]).arg(&p).output().unwrap();
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("UTF-16"), "{}", stderr(&out));
}

#[test]
fn national_numbers_pass_with_a_default_region() {
    let run = Run::new();
    let out = validate(
        &run,
        "login,phone\ncy@example.com,(213) 555-0104\n",
        &["--default-region", "US"],
    );
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
}

// Pins: a user named twice, once with a damaged number, is a conflict (not
// changed on the strength of the other row); one number for two users is
// flagged as a sign of shifted rows.
#[test]
fn a_damaged_second_row_makes_a_conflict_and_shared_numbers_are_flagged() {
    let run = Run::new();
    let out = validate(
        &run,
        "login,phone\n\
         ana@example.com,+1 213 555 0101\n\
         ana@example.com,garbage\n\
         bo@example.com,+1 213 555 0177\n\
         cy@example.com,+1 213 555 0177\n",
        &[],
    );
    let text = stdout(&out);
    assert!(text.contains("row 1: conflict"), "{text}");
    assert!(text.contains("row 2: invalid"), "{text}");
    assert!(
        text.contains("row 3: ok") && text.contains("same new number"),
        "{text}"
    );
    assert!(text.contains("row 4: ok"), "{text}");
}
