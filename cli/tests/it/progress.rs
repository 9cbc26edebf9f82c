//! Progress bars: drawn on stderr only when stderr is a terminal and `--json` is not given.
//! Piped output (scripts, these tests) gets nothing extra: with `--json`, stdout is exactly
//! one JSON value and stderr is empty. Under a pseudo-terminal (`script`), a long import
//! draws its bar on the terminal.

use std::process::Command;

use crate::util::*;

const ROWS: usize = 3000;

#[test]
fn big_import_and_export_print_nothing_extra_when_not_a_terminal() {
    let home = Home::new();
    let csv = home.scratch("visits.csv");
    std::fs::write(&csv, generated_visits_csv("进度", ROWS)).expect("write csv");
    let file = csv.to_str().expect("utf-8 path");

    // --json: exactly one JSON value on stdout, nothing on stderr.
    let args = ["import", "--kind", "visits", "--format", "csv", file];
    let out = home.run_json(&args);
    assert_success(&out, &args);
    assert_eq!(
        parse_json(&out.stdout, &args),
        serde_json::json!({"imported": ROWS})
    );
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let target = home.scratch("out.json");
    let target = target.to_str().expect("utf-8 path");
    let args = [
        "export", "--kind", "visits", "--format", "json", "--out", target,
    ];
    let out = home.run_json(&args);
    assert_success(&out, &args);
    assert_eq!(parse_json(&out.stdout, &args)["exported"], ROWS);
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: serde_json::Value =
        serde_json::from_slice(&read(std::path::Path::new(target))).expect("export is JSON");
    assert_eq!(exported.as_array().map(Vec::len), Some(ROWS));

    // Export to stdout: the file's bytes and nothing else, with or without --json.
    for json in [true, false] {
        let args = ["export", "--kind", "visits", "--format", "csv"];
        let out = home.command(json, &args).output().expect("run yizhan");
        assert_success(&out, &args);
        assert!(
            out.stderr.is_empty(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = parse_csv(&String::from_utf8(out.stdout).expect("UTF-8"));
        assert_eq!(rows.len(), ROWS + 1, "header and one row per visit");
    }

    // Without --json and without a terminal: the human sentence only, stderr empty.
    let args = ["import", "--kind", "visits", "--format", "csv", file];
    let out = home.run(&args);
    assert_success(&out, &args);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("Imported {ROWS} records.")
    );
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `script -qec CMD /dev/null` runs CMD on a pseudo-terminal and copies what it drew.
fn on_a_terminal(home: &Home, args: &str) -> String {
    let cmd = format!("{BIN} --home '{}' {args}", home.path().display());
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("HOME", home.scratch("user"))
        .env_remove("YIZHAN_HOME")
        .env("TERM", "xterm")
        .env("COLUMNS", "120")
        .output()
        .expect("run script(1) (util-linux)");
    assert!(
        out.status.success(),
        "{cmd} under script failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_long_import_draws_a_bar_on_a_terminal_but_not_with_json() {
    let home = Home::new();
    let csv = home.scratch("visits.csv");
    std::fs::write(&csv, generated_visits_csv("终端", ROWS)).expect("write csv");
    let import = format!("import --kind visits --format csv '{}'", csv.display());

    let drawn = on_a_terminal(&home, &import);
    assert!(
        drawn.contains("importing"),
        "no progress bar drawn: {drawn:?}"
    );
    assert!(
        drawn.contains(&format!("/{ROWS} rows")),
        "no row count: {drawn:?}"
    );
    assert!(
        drawn.contains(&format!("Imported {ROWS} records.")),
        "{drawn:?}"
    );

    // --json on a terminal: the one JSON value, no bar.
    let drawn = on_a_terminal(&home, &format!("--json {import}"));
    assert!(
        !drawn.contains("importing"),
        "a bar was drawn with --json: {drawn:?}"
    );
    let value: serde_json::Value = serde_json::from_str(drawn.trim()).expect("one JSON value");
    assert_eq!(value, serde_json::json!({"imported": ROWS}));
}
