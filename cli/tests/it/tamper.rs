//! `verify` re-checks every stored change: a flipped byte anywhere in a change's bytes,
//! signature or hash makes it exit 1 with `bad` > 0.

use crate::util::*;
use rusqlite::{Connection, params};
use serde_json::Value;

/// A home with a few visits, tickets, edits and comments.
fn populated() -> Home {
    let home = Home::new();
    let t = home.open_ticket("楼道灯坏了", &["--category", "城市管理"]);
    home.json(&["ticket", "comment", &t, "已报修"]);
    home.json(&["ticket", "update", &t, "--status", "resolved"]);
    let v = home.add_visit(
        "幸福里3号楼201室",
        &["--note", "独居老人", "--resident", "王秀英", "--ticket", &t],
    );
    home.json(&["visit", "edit", &v, "--needs", "送餐"]);
    home.add_visit("和平路8号", &["--category", "政策咨询"]);
    home
}

fn row_count(home: &Home) -> i64 {
    let db = Connection::open(home.store()).expect("open store.db");
    db.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
        .expect("count changes")
}

/// Runs `verify --json`; returns (exit code, the printed object).
fn verify(home: &Home) -> (i32, Value) {
    let out = home.run_json(&["verify"]);
    let v = parse_json(&out.stdout, &["verify"]);
    assert_eq!(keys(&v), sorted(&["changes", "bad"]), "{v}");
    (out.status.code().unwrap_or(-1), v)
}

/// Flips one bit in the middle of `column` of one stored change (the `pick`-th by hash).
/// Must be called while no yizhan process runs.
fn flip(home: &Home, column: &str, pick: usize) {
    let db = Connection::open(home.store()).expect("open store.db");
    let (hash, mut value): (Vec<u8>, Vec<u8>) = db
        .query_row(
            &format!("SELECT hash, {column} FROM changes ORDER BY hash LIMIT 1 OFFSET ?1"),
            params![pick as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("select a change");
    assert!(!value.is_empty(), "{column} is empty");
    let i = value.len() / 2;
    value[i] ^= 0x10;
    let n = db
        .execute(
            &format!("UPDATE changes SET {column} = ?1 WHERE hash = ?2"),
            params![value, hash],
        )
        .expect("update");
    assert_eq!(n, 1, "updated {n} rows");
}

#[test]
fn store_layout_is_as_documented() {
    let home = populated();
    let db = Connection::open(home.store()).expect("open store.db");
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal");
    let mut stmt = db
        .prepare("SELECT name FROM pragma_table_info('changes')")
        .expect("table_info");
    let columns: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    for c in [
        "hash",
        "doc_id",
        "actor",
        "seq",
        "signer",
        "signature",
        "bytes",
        "received_at",
    ] {
        assert!(
            columns.iter().any(|x| x == c),
            "changes has no {c}: {columns:?}"
        );
    }
    // Every change is signed by this device (the only one that wrote here).
    let signers: Vec<Vec<u8>> = db
        .prepare("SELECT DISTINCT signer FROM changes")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    let hex: Vec<String> = signers
        .iter()
        .map(|s| s.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    assert_eq!(hex, std::slice::from_ref(&home.device_id), "signers");
}

#[test]
fn an_untouched_store_verifies() {
    let home = populated();
    let (code, v) = verify(&home);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["bad"], 0);
    let rows = row_count(&home);
    assert!(
        rows >= 6,
        "expected at least one change per command, got {rows}"
    );
    assert_eq!(v["changes"], rows, "verify counts every stored change");
    // For people too.
    let text = home.text(&["verify"]);
    assert!(!text.trim().is_empty());
}

#[test]
fn a_flipped_byte_in_change_bytes_fails_verify() {
    let home = populated();
    let rows = row_count(&home);
    flip(&home, "bytes", 3);
    let (code, v) = verify(&home);
    assert_eq!(code, 1, "verify must fail on tampered bytes: {v}");
    assert!(v["bad"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert_eq!(v["changes"], rows, "{v}");
    let out = home.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "verify without --json");
}

#[test]
fn a_flipped_byte_in_a_signature_fails_verify() {
    let home = populated();
    flip(&home, "signature", 0);
    let (code, v) = verify(&home);
    assert_eq!(code, 1, "verify must fail on a tampered signature: {v}");
    assert!(v["bad"].as_u64().unwrap_or(0) >= 1, "{v}");
}

#[test]
fn a_flipped_byte_in_a_hash_fails_verify() {
    let home = populated();
    flip(&home, "hash", 1);
    let (code, v) = verify(&home);
    assert_eq!(code, 1, "verify must fail on a wrong hash: {v}");
    assert!(v["bad"].as_u64().unwrap_or(0) >= 1, "{v}");
}

#[test]
fn every_tampered_change_is_counted() {
    let home = populated();
    flip(&home, "bytes", 0);
    flip(&home, "signature", 2);
    flip(&home, "bytes", 5);
    let (code, v) = verify(&home);
    assert_eq!(code, 1, "{v}");
    assert!(
        v["bad"].as_u64().unwrap_or(0) >= 3,
        "three distinct changes were tampered with: {v}"
    );
}

#[test]
fn a_record_lost_from_the_id_index_fails_verify() {
    let home = populated();
    {
        let db = Connection::open(home.store()).expect("open store.db");
        let n = db
            .execute(
                "DELETE FROM doc_ids_new WHERE doc_id = (SELECT MIN(doc_id) FROM doc_ids_new)",
                [],
            )
            .expect("delete an index row");
        assert_eq!(n, 1, "the records made here are in the index of new ids");
    }
    let (code, v) = verify(&home);
    assert_eq!(
        code, 1,
        "verify must notice a record its index does not find: {v}"
    );
    assert!(v["bad"].as_u64().unwrap_or(0) >= 1, "{v}");
}
