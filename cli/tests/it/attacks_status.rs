//! `yizhan status` shows the misbehaviour a node recorded (the attack corpus itself is
//! `tests/tests/it/attacks.rs`; there the station records M's equivocation through ingest).

use crate::util::Home;

#[test]
fn status_shows_recorded_misbehaviour() {
    let home = Home::station();
    let status = home.json(&["status"]);
    assert_eq!(status["misbehaviour"], serde_json::json!([]));
    assert!(home.text(&["status"]).contains("misbehaviour"));

    // What ingest records on an equivocation (see `node/src/rules.rs`), put in directly.
    let key = yizhan_protocol::DeviceKey::from_seed([4; 32]).device_id();
    let db = rusqlite::Connection::open(home.store()).unwrap();
    db.execute(
        "INSERT INTO misbehaviour(device, kind, detail, from_peer, at) VALUES (?1, ?2, ?3, NULL, 0)",
        rusqlite::params![
            key.as_bytes().as_slice(),
            "equivocation",
            "record 00: change 2 signed twice, as 11 and as 22"
        ],
    )
    .unwrap();
    drop(db);

    let status = home.json(&["status"]);
    let list = status["misbehaviour"].as_array().expect("a list");
    assert_eq!(list.len(), 1, "{status}");
    assert_eq!(list[0]["device_id"], key.to_string());
    assert_eq!(list[0]["kind"], "equivocation");
    assert!(list[0]["detail"].as_str().unwrap().contains("signed twice"));
    assert_eq!(list[0]["at"], "1970-01-01T00:00:00Z");
    let text = home.text(&["status"]);
    assert!(text.contains("1 recorded; latest: equivocation"), "{text}");
}
