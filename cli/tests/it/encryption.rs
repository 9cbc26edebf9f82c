//! `init --encrypt`: a stolen laptop's home gives nothing away, and every command needs
//! the passphrase.

use crate::util::{Home, assert_one_error_line};

const PASS: &str = "芝麻开门 open sesame";

/// Every byte of every file in the home (store, WAL, shm, anything else).
fn home_bytes(home: &Home) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn marker_strings_never_reach_the_disk_in_the_clear() {
    let home = Home::encrypted(PASS);
    let markers = [
        "MARKER-和平里-778899",
        "MARKER-张秀英",
        "MARKER-冬季取暖补贴",
    ];
    for i in 0..30 {
        home.add_visit(
            &format!("{} {i}", markers[0]),
            &["--resident", markers[1], "--needs", markers[2]],
        );
    }
    // Check while the WAL still holds the latest pages, and again after a checkpoint.
    for (name, bytes) in home_bytes(&home) {
        for m in markers {
            assert!(!contains(&bytes, m.as_bytes()), "{m} found in {name}");
        }
        assert!(
            !contains(&bytes, b"SQLite format 3"),
            "{name} has a plain SQLite header"
        );
    }
    assert!(
        !home.path().join("device.key").exists(),
        "the key must live inside the store"
    );
    // The records come back whole with the passphrase.
    let visits = home.visits();
    assert_eq!(visits.len(), 30);
    assert_eq!(visits[0]["residents"][0], markers[1]);
    assert_eq!(home.json(&["verify"])["bad"], 0);
}

#[test]
fn a_wrong_or_missing_passphrase_is_a_clear_error_and_changes_nothing() {
    let mut home = Home::encrypted(PASS);
    home.add_visit("和平里 1 号", &[]);
    let before = home_bytes(&home);

    home.passphrase = Some("wrong".into());
    let (code, stderr) = home.fail(&["visit", "list"]);
    assert_eq!(code, 1);
    assert_one_error_line(&stderr, &["visit", "list"]);
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    let (code, _) = home.fail(&["visit", "add", "--household", "x"]);
    assert_eq!(code, 1);

    home.passphrase = None; // and no terminal: stdin is not a tty
    let (code, stderr) = home.fail(&["id"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("passphrase"), "{stderr}");

    assert_eq!(
        home_bytes(&home),
        before,
        "a failed command changed the home"
    );
    home.passphrase = Some(PASS.into());
    assert_eq!(home.visits().len(), 1);
    // A second init is refused.
    let (code, _) = home.fail(&["init", "--name", "again", "--encrypt"]);
    assert_eq!(code, 1);
}

#[test]
fn an_empty_passphrase_is_refused() {
    let mut home = Home::empty();
    home.passphrase = Some(String::new());
    let args = ["init", "--name", "x", "--encrypt"];
    let (code, stderr) = home.fail(&args);
    assert_eq!(code, 1);
    assert_one_error_line(&stderr, &args);
    assert!(
        stderr.contains("the passphrase must not be empty"),
        "{stderr}"
    );
    assert!(!home.store().exists());

    // At open: an encrypted home after a day's records, then an empty passphrase.
    let mut home = Home::encrypted(PASS);
    let t = home.open_ticket("楼道灯坏了", &[]);
    home.add_visit("和平里 1 号", &["--ticket", &t]);
    home.json(&["ticket", "comment", &t, "已报修"]);
    let before = home_bytes(&home);
    home.passphrase = Some(String::new());
    for args in [
        vec!["visit", "list"],
        vec!["visit", "add", "--household", "x"],
        vec!["status"],
    ] {
        let (code, stderr) = home.fail(&args);
        assert_eq!(code, 1, "{stderr}");
        assert_one_error_line(&stderr, &args);
        assert!(
            stderr.contains("the passphrase must not be empty"),
            "not a clear reason: {stderr}"
        );
    }
    assert_eq!(home_bytes(&home), before, "a refused open changed the home");
}
