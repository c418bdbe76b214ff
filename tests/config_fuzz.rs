//! Config fuzz: the shipped `conf/lb.yaml` mutated 300 ways (lines deleted, repeated or
//! re-indented, values of the wrong type, huge or negative numbers and durations, empty lists,
//! non-ASCII, the file cut short) and each checked with `lb -t`: it never panics or hangs; it
//! says the file is valid and exits 0, or prints one line naming the file and where the mistake
//! is (a field path, a line and column, or the field in backquotes) and exits 1.

mod common;

use common::rng::XorShift;
use common::{crate_dir, run_lb, TempDir};

const MUTANTS: usize = 300;

/// What a value may be replaced with.
const VALUES: &[&str] = &[
    "[1, 2]",
    "{a: 1}",
    "\"text\"",
    "-5",
    "99999999999999999999999",
    "18446744073709551616",
    "-1s",
    "0",
    "0s",
    "1e400",
    "\"\"",
    "[]",
    "{}",
    "~",
    "yes",
    "ü日本語",
    "\"\\u0000\"",
    "10000000000000d",
    "1.5",
    "&a x",
    "*nowhere",
    "!!binary aGVsbG8=",
];

/// One mutation of `text`.
fn mutate(text: &str, rng: &mut XorShift) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = rng.below(lines.len());
    match rng.below(8) {
        0 => {
            lines.remove(at);
        }
        1 => {
            let line = lines[at].clone();
            lines.insert(at, line);
        }
        2 => lines[at] = format!(" {}", lines[at]),
        3 => lines[at] = lines[at].trim_start().to_string(),
        4 => {
            // The value of a `key: value` line, replaced.
            let value = rng.pick(VALUES);
            if let Some(colon) = lines[at].find(": ") {
                lines[at] = format!("{}: {value}", &lines[at][..colon]);
            } else {
                lines[at].push_str(value);
            }
        }
        5 => lines[at] = lines[at].replace(|c: char| c.is_ascii_digit(), "9"),
        6 => {
            let cut = text.char_indices().map(|(i, _)| i).nth(rng.below(text.chars().count()));
            return text[..cut.unwrap_or(0)].to_string();
        }
        _ => lines[at] = lines[at].replace('e', "é"),
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Whether the message (after `lb: FILE: `) says where the mistake is.
fn names_where(message: &str) -> bool {
    let path = message
        .split(": ")
        .next()
        .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || "._-[]".contains(c)));
    path || message.contains(" line ") || message.contains('`') || message == "the file is empty"
}

#[test]
fn lb_t_on_three_hundred_mutants_of_the_shipped_config_answers_in_one_line_and_never_panics() {
    let shipped = std::fs::read_to_string(crate_dir().join("conf/lb.yaml")).expect("conf/lb.yaml");
    let dir = TempDir::new("config-fuzz");
    let mut rng = XorShift(0x1b_f00d_5eed);
    let (mut valid, mut refused) = (0, 0);
    for i in 0..MUTANTS {
        let mut text = mutate(&shipped, &mut rng);
        if rng.below(3) == 0 {
            text = mutate(&text, &mut rng);
        }
        let file = dir.path(&format!("m{i}.yaml"));
        std::fs::write(&file, &text).expect("write the mutant");
        let file = file.display().to_string();
        // run_lb fails the test if lb runs past its limit (a hang).
        let (status, out, err) = run_lb(&["-t", "-c", &file]);
        let replay = || format!("mutant {i} ({file}):\n{text}\nstdout: {out}\nstderr: {err}");
        assert!(!err.contains("panicked"), "a panic: {}", replay());
        if status.success() {
            assert!(out.contains("is valid"), "{}", replay());
            valid += 1;
            continue;
        }
        assert_eq!(status.code(), Some(1), "{}", replay());
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {}", replay());
        let message = lines[0].strip_prefix(&format!("lb: {file}: ")).unwrap_or_else(|| {
            panic!("the line names the file: {}", replay());
        });
        assert!(names_where(message), "the line says where: {}", replay());
        refused += 1;
        let _ = std::fs::remove_file(&file);
    }
    // Both kinds occur, so the check means something either way.
    assert!(valid >= 20 && refused >= 100, "{valid} valid, {refused} refused");
}
