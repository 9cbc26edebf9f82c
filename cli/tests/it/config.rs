//! `<home>/config.toml` and `yizhan config`: file values are used, flags override them,
//! the station stored at join comes after the file, a bad file is one error line and exit
//! 1, and `config --json` is one object.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::util::*;
use serde_json::Value;

const KEYS: [&str; 5] = [
    "listen",
    "station",
    "discovery",
    "peers",
    "sync_interval_secs",
];

fn write_config(home: &Home, text: &str) {
    std::fs::write(home.path().join("config.toml"), text).expect("write config.toml");
}

fn setting(v: &Value, key: &str) -> (Value, String) {
    (
        v[key]["value"].clone(),
        v[key]["source"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn config_json_is_one_object_of_settings_with_their_sources() {
    let home = Home::new();
    let v = home.json(&["config"]);
    let mut expected: Vec<&str> = KEYS.to_vec();
    expected.extend(["file", "file_exists"]);
    assert_eq!(keys(&v), sorted(&expected), "{v}");
    for key in KEYS {
        assert_eq!(keys(&v[key]), sorted(&["source", "value"]), "{key}: {v}");
        assert_eq!(v[key]["source"], "default", "{key}: {v}");
    }
    assert_eq!(v["listen"]["value"], "0.0.0.0:7365");
    assert_eq!(v["station"]["value"], Value::Null);
    assert_eq!(v["discovery"]["value"], true);
    assert_eq!(v["peers"]["value"], serde_json::json!([]));
    assert_eq!(v["sync_interval_secs"]["value"], 30);
    assert_eq!(v["file_exists"], false);
    let file = v["file"].as_str().expect("file");
    assert_eq!(std::path::Path::new(file), home.path().join("config.toml"));
    // For people: a table naming every setting and its source.
    let text = home.text(&["config"]);
    for key in KEYS {
        assert!(text.contains(key), "{text}");
    }
    assert!(
        text.contains("default") && text.contains("not present"),
        "{text}"
    );
}

#[test]
fn file_values_are_used_and_flags_override_them() {
    let home = Home::new();
    write_config(
        &home,
        "# the station's LAN\nlisten = \"127.0.0.1:7400\"\nstation = \"127.0.0.1:7401\"\n\
         discovery = false\npeers = [\"127.0.0.1:7402\", \"127.0.0.1:7403\"]\n\
         sync_interval_secs = 5\n",
    );
    let v = home.json(&["config"]);
    assert_eq!(v["file_exists"], true);
    assert_eq!(
        setting(&v, "listen"),
        ("127.0.0.1:7400".into(), "config file".into())
    );
    assert_eq!(
        setting(&v, "station"),
        ("127.0.0.1:7401".into(), "config file".into())
    );
    assert_eq!(
        setting(&v, "discovery"),
        (false.into(), "config file".into())
    );
    assert_eq!(
        setting(&v, "peers"),
        (
            serde_json::json!(["127.0.0.1:7402", "127.0.0.1:7403"]),
            "config file".into()
        )
    );
    assert_eq!(
        setting(&v, "sync_interval_secs"),
        (5.into(), "config file".into())
    );

    let v = home.json(&[
        "config",
        "--listen",
        "127.0.0.1:0",
        "--station",
        "127.0.0.1:9",
    ]);
    assert_eq!(setting(&v, "listen"), ("127.0.0.1:0".into(), "flag".into()));
    assert_eq!(
        setting(&v, "station"),
        ("127.0.0.1:9".into(), "flag".into())
    );
    assert_eq!(setting(&v, "discovery").1, "config file");

    // A file that turns discovery on is overridden by --no-discovery.
    write_config(&home, "discovery = true\n");
    let v = home.json(&["config", "--no-discovery"]);
    assert_eq!(setting(&v, "discovery"), (false.into(), "flag".into()));
}

#[test]
fn serve_listens_where_the_file_says_unless_a_flag_says_otherwise() {
    let home = Home::new();
    // Discovery off: this test runs outside a private network namespace.
    write_config(&home, "listen = \"127.0.0.1:0\"\ndiscovery = false\n");
    let first_line = |extra: &[&str]| -> Value {
        let mut args = vec!["serve"];
        args.extend(extra);
        let mut child = home
            .command(true, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read first line");
        let _ = child.kill();
        let _ = child.wait();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    };
    let v = first_line(&[]);
    assert_eq!(v["event"], "listening", "{v}");
    let addr = v["addr"].as_str().expect("addr");
    assert!(
        addr.starts_with("127.0.0.1:") && addr != "127.0.0.1:0",
        "{v}"
    );
    let v = first_line(&["--listen", "[::1]:0"]);
    assert!(
        v["addr"].as_str().expect("addr").starts_with("[::1]:"),
        "{v}"
    );
}

#[test]
fn the_file_station_comes_before_the_one_stored_at_join() {
    let station = Home::station();
    let v = Home::new();
    let token = station.json(&[
        "enroll",
        v.device_id.as_str(),
        "--name",
        "甲",
        "--grid",
        "和平里",
    ])["token"]
        .as_str()
        .expect("token")
        .to_string();
    v.json(&["join", token.as_str(), "--station", "127.0.0.1:7500"]);
    let c = v.json(&["config"]);
    assert_eq!(
        setting(&c, "station"),
        ("127.0.0.1:7500".into(), "join".into())
    );
    write_config(&v, "station = \"127.0.0.1:7501\"\n");
    let c = v.json(&["config"]);
    assert_eq!(
        setting(&c, "station"),
        ("127.0.0.1:7501".into(), "config file".into())
    );
}

#[test]
fn a_bad_file_is_one_error_line_naming_the_file_and_key_and_exit_1() {
    let home = Home::new();
    let path = home.path().join("config.toml");
    let path = path.display().to_string();
    for (text, needle) in [
        (
            "listen = \"127.0.0.1:0\"\nstaton = \"127.0.0.1:1\"\n",
            "staton",
        ),
        ("discovery = \"yes\"\n", "discovery"),
        ("listen = \"not an address\"\n", "listen"),
        ("peers = [\"127.0.0.1:1\", \"nowhere\"]\n", "peers"),
        ("sync_interval_secs = 0\n", "sync_interval_secs"),
        ("listen = \n", "line 1"),
    ] {
        write_config(&home, text);
        for args in [&["config"][..], &["serve"][..], &["sync"][..]] {
            let (code, stderr) = home.fail(args);
            assert_eq!(code, 1, "{text:?} {args:?}: {stderr}");
            assert_one_error_line(&stderr, args);
            assert!(
                stderr.contains(&path) && stderr.contains(needle),
                "{text:?} {args:?}: {stderr}"
            );
        }
    }
}
