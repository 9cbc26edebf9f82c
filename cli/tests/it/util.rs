//! A small harness for driving the built `yizhan` binary, one temporary home per test.
//!
//! Every test gets its own [`Home`]: a fresh temporary directory passed as `--home DIR`, with
//! `HOME`/`XDG_DATA_HOME` pointed inside it as well, so that no test can ever touch a real
//! user's data directory, and `TZ=UTC` so that dates are deterministic.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_yizhan");

/// Keys of a visit object as `visit list` prints it, in order (also the CSV header).
pub const VISIT_KEYS: [&str; 11] = [
    "id",
    "household",
    "household_id",
    "grid",
    "category",
    "note",
    "residents",
    "needs",
    "visited_at",
    "author",
    "tickets",
];

/// Keys of a ticket object as `ticket list` prints it, in order (also the CSV header).
pub const TICKET_KEYS: [&str; 18] = [
    "id",
    "title",
    "status",
    "category",
    "priority",
    "household",
    "household_id",
    "grid",
    "assignee",
    "opened_by",
    "opened_at",
    "note",
    "due",
    "overdue",
    "channel",
    "resolved_at",
    "satisfaction",
    "rated_at",
];

/// The seven service categories: (slug, Chinese name).
pub const CATEGORIES: [(&str, &str); 7] = [
    ("resident-services", "为民服务"),
    ("poverty-relief", "扶贫解困"),
    ("co-governance", "家园共治"),
    ("city-management", "城市管理"),
    ("dispute-mediation", "纠纷调解"),
    ("policy-consultation", "政策咨询"),
    ("information", "信息发布"),
];

/// One node's home in a temporary directory.
pub struct Home {
    dir: TempDir,
    /// This node's device id (empty for a home that was never initialised).
    pub device_id: String,
    /// Given to every command as `YIZHAN_PASSPHRASE` when set.
    pub passphrase: Option<String>,
}

impl Home {
    /// A temporary home that has not been initialised.
    pub fn empty() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("yizhan-test-")
            .tempdir()
            .expect("create temp dir");
        std::fs::create_dir(dir.path().join("home")).expect("create home dir");
        std::fs::create_dir(dir.path().join("user")).expect("create user dir");
        Home {
            dir,
            device_id: String::new(),
            passphrase: None,
        }
    }

    /// A home initialised with `init --name 测试员` (an unenrolled node).
    pub fn new() -> Home {
        Home::with_init(&["init", "--name", "测试员"])
    }

    /// A home initialised as a station.
    pub fn station() -> Home {
        Home::with_init(&["init", "--name", "幸福里工作站", "--station"])
    }

    /// A home initialised with `init --encrypt`, its passphrase given to every command.
    pub fn encrypted(passphrase: &str) -> Home {
        let mut home = Home::empty();
        home.passphrase = Some(passphrase.to_string());
        let v = home.json(&["init", "--name", "加密员", "--encrypt"]);
        home.device_id = v["device_id"].as_str().expect("device_id").to_string();
        home
    }

    fn with_init(args: &[&str]) -> Home {
        let mut home = Home::empty();
        let v = home.json(args);
        let id = v["device_id"]
            .as_str()
            .unwrap_or_else(|| panic!("init printed no device_id: {v}"))
            .to_string();
        assert!(is_hex(&id, 64), "device_id is not 64 lowercase hex: {id:?}");
        home.device_id = id;
        home
    }

    /// The directory passed as `--home`.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A scratch directory beside the home, for files the test writes or reads.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `<home>/store.db`.
    pub fn store(&self) -> PathBuf {
        self.path().join("store.db")
    }

    /// A `yizhan` command with a clean environment, without `--home`.
    pub fn bare_command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("YIZHAN_HOME")
            .env_remove("YIZHAN_PASSPHRASE")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .env("HOME", self.dir.path().join("user"))
            .env("XDG_DATA_HOME", self.dir.path().join("user").join("data"))
            .env(
                "XDG_CONFIG_HOME",
                self.dir.path().join("user").join("config"),
            )
            .env("TZ", "UTC")
            .env("NO_COLOR", "1")
            // English unless a test asks for Chinese (`LANG=zh_CN.UTF-8` or `--lang zh`).
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        if let Some(p) = &self.passphrase {
            cmd.env("YIZHAN_PASSPHRASE", p);
        }
        cmd
    }

    /// `yizhan --home DIR [--json] ARGS...`.
    pub fn command<S: AsRef<OsStr>>(&self, json: bool, args: &[S]) -> Command {
        let mut cmd = self.bare_command();
        cmd.arg("--home").arg(self.path());
        if json {
            cmd.arg("--json");
        }
        cmd.args(args);
        cmd
    }

    /// Runs `yizhan --home DIR ARGS...` (no `--json`).
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command(false, args).output().expect("run yizhan")
    }

    /// Runs `yizhan --home DIR --json ARGS...`.
    pub fn run_json<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command(true, args).output().expect("run yizhan")
    }

    /// Runs with `--json`, asserts success and that stdout is exactly one JSON value.
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> Value {
        let out = self.run_json(args);
        assert_success(&out, args);
        parse_json(&out.stdout, args)
    }

    /// Runs without `--json`, asserts success and returns stdout.
    pub fn text<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert_success(&out, args);
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs with `--json`, asserts failure with nothing on stdout; returns (exit code, stderr).
    pub fn fail<S: AsRef<OsStr>>(&self, args: &[S]) -> (i32, String) {
        let out = self.run_json(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "expected failure of {} but it succeeded; stdout: {}",
            show_args(args),
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            out.stdout.iter().all(u8::is_ascii_whitespace),
            "failed command {} printed on stdout with --json: {:?}",
            show_args(args),
            String::from_utf8_lossy(&out.stdout)
        );
        (out.status.code().unwrap_or(-1), stderr)
    }

    /// Asserts the command fails with exit 1 and exactly one stderr line `error: ...`.
    /// Returns that line.
    pub fn error<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let (code, stderr) = self.fail(args);
        assert_eq!(
            code,
            1,
            "expected exit 1 from {}; stderr: {stderr}",
            show_args(args)
        );
        assert_one_error_line(&stderr, args);
        stderr.trim_end().to_string()
    }

    /// Asserts the command is a usage error: exit 2, with something said on stderr.
    pub fn usage_error<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let (code, stderr) = self.fail(args);
        assert_eq!(
            code,
            2,
            "expected usage error (exit 2) from {}; stderr: {stderr}",
            show_args(args)
        );
        assert!(!stderr.trim().is_empty(), "usage error with empty stderr");
        stderr
    }

    /// `visit list --json` as a vector.
    pub fn visits(&self) -> Vec<Value> {
        array(self.json(&["visit", "list"]))
    }

    /// `ticket list --json` as a vector.
    pub fn tickets(&self) -> Vec<Value> {
        array(self.json(&["ticket", "list"]))
    }

    /// Both lists, for comparing the store before and after a failed command.
    pub fn snapshot(&self) -> (Value, Value) {
        (
            self.json(&["visit", "list"]),
            self.json(&["ticket", "list"]),
        )
    }

    /// `visit add --household H EXTRA...`; returns the new id (checked to be 32 hex).
    pub fn add_visit(&self, household: &str, extra: &[&str]) -> String {
        let mut args = vec!["visit", "add", "--household", household];
        args.extend_from_slice(extra);
        id_of(&self.json(&args))
    }

    /// `ticket open --title T EXTRA...`; returns the new id (checked to be 32 hex).
    pub fn open_ticket(&self, title: &str, extra: &[&str]) -> String {
        let mut args = vec!["ticket", "open", "--title", title];
        args.extend_from_slice(extra);
        id_of(&self.json(&args))
    }

    /// `visit show ID --json`.
    pub fn visit(&self, id: &str) -> Value {
        self.json(&["visit", "show", id])
    }

    /// `ticket show ID --json`.
    pub fn ticket(&self, id: &str) -> Value {
        self.json(&["ticket", "show", id])
    }
}

/// Extracts `"id"` from a `{"id"}` answer and checks it is a record id.
pub fn id_of(v: &Value) -> String {
    let id = v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no \"id\" in {v}"))
        .to_string();
    assert!(is_hex(&id, 32), "record id is not 32 lowercase hex: {id:?}");
    id
}

pub fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("expected a JSON array, got {other}"),
    }
}

/// The entry for `device` in the `peers` array of a `status --json` document, if it lists
/// it (a document without that array fails the test).
pub fn status_peer(status: &Value, device: &str) -> Option<Value> {
    array(status["peers"].clone())
        .into_iter()
        .find(|p| p["device_id"] == device)
}

pub fn show_args<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn assert_success<S: AsRef<OsStr>>(out: &Output, args: &[S]) {
    assert!(
        out.status.success(),
        "`yizhan {}` failed ({:?}); stderr: {}; stdout: {}",
        show_args(args),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

pub fn parse_json<S: AsRef<OsStr>>(stdout: &[u8], args: &[S]) -> Value {
    let text = std::str::from_utf8(stdout).expect("stdout is UTF-8");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "`yizhan --json {}` did not print exactly one JSON value ({e}): {text:?}",
            show_args(args)
        )
    })
}

pub fn assert_one_error_line<S: AsRef<OsStr>>(stderr: &str, args: &[S]) {
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "`yizhan {}` should print exactly one stderr line, got: {stderr:?}",
        show_args(args)
    );
    assert!(
        lines[0].starts_with("error: "),
        "stderr line should start with `error: `: {:?}",
        lines[0]
    );
}

/// `s` is exactly `len` lowercase hex digits.
pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Keys of a JSON object, sorted.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// The given key names, sorted, for comparing with [`keys`].
pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

/// Seconds since the Unix epoch now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Parses an RFC 3339 timestamp to whole seconds since the epoch; panics if malformed.
pub fn rfc3339_secs(s: &str) -> i64 {
    fn num(s: &str, what: &str, full: &str) -> i64 {
        assert!(
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
            "bad {what} in RFC 3339 time {full:?}"
        );
        s.parse().expect("digits")
    }
    let b = s.as_bytes();
    assert!(
        b.len() >= 20
            && b[4] == b'-'
            && b[7] == b'-'
            && (b[10] == b'T' || b[10] == b't')
            && b[13] == b':'
            && b[16] == b':',
        "not an RFC 3339 time: {s:?}"
    );
    let year = num(&s[0..4], "year", s);
    let month = num(&s[5..7], "month", s);
    let day = num(&s[8..10], "day", s);
    let hour = num(&s[11..13], "hour", s);
    let min = num(&s[14..16], "minute", s);
    let sec = num(&s[17..19], "second", s);
    assert!(
        (1..=12).contains(&month) && (1..=31).contains(&day),
        "{s:?}"
    );
    assert!(hour < 24 && min < 60 && sec <= 60, "{s:?}");
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        assert!(digits > 0, "empty fraction in {s:?}");
        rest = &frac[digits..];
    }
    let offset = if rest == "Z" || rest == "z" {
        0
    } else {
        let rb = rest.as_bytes();
        assert!(
            rb.len() == 6 && (rb[0] == b'+' || rb[0] == b'-') && rb[3] == b':',
            "bad offset in RFC 3339 time {s:?}"
        );
        let o = num(&rest[1..3], "offset hours", s) * 3600 + num(&rest[4..6], "offset", s) * 60;
        if rb[0] == b'-' { -o } else { o }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hour * 3600 + min * 60 + sec - offset
}

/// Asserts `t` is an RFC 3339 time within a few minutes of now.
pub fn assert_recent(t: &Value) {
    let s = t
        .as_str()
        .unwrap_or_else(|| panic!("expected a time string, got {t}"));
    let d = (rfc3339_secs(s) - now_secs()).abs();
    assert!(d < 600, "time {s} is not now (off by {d} s)");
}

/// Parses CSV text (RFC 4180: quoted fields, doubled quotes, newlines inside quotes),
/// after the UTF-8 byte order mark that `export` writes first.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            _ => field.push(c),
        }
    }
    assert!(!in_quotes, "unterminated quoted CSV field");
    if any {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Writes rows as CSV, every field quoted.
pub fn write_csv(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// Display width of a string under a simple rule: CJK and full-width characters take two
/// columns, everything else one.
pub fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

pub fn char_width(c: char) -> usize {
    let u = c as u32;
    let wide = matches!(u,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x20000..=0x2FFFD
        | 0x30000..=0x3FFFD);
    if wide { 2 } else { 1 }
}

/// Display column at which `needle` starts in `line`, if it occurs.
pub fn display_col(line: &str, needle: &str) -> Option<usize> {
    line.find(needle).map(|i| display_width(&line[..i]))
}

/// Reads a file, panicking with its path on error.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Deterministic pseudo-random lowercase hex of `len` digits for a seed (test data only).
pub fn fake_hex(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(char::from_digit((x % 16) as u32, 16).expect("hex digit"));
    }
    s
}

/// The `visited_at` of generated visit number `i`: one second apart from 2026-11-01.
pub fn generated_time(i: usize) -> String {
    format!(
        "2026-11-{:02}T{:02}:{:02}:{:02}Z",
        1 + i / 86_400,
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60
    )
}

/// The household of generated visit number `i` (with `tag` to tell batches apart).
pub fn generated_household(tag: &str, i: usize) -> String {
    format!("{tag}幸福里{}栋{}室", i / 100, i % 100)
}

/// Rows (without header) of a visits CSV as `export` writes it, as if exported from another
/// node: ids and authors are someone else's.
pub fn generated_visit_rows(tag: &str, n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            vec![
                fake_hex(i as u64 + 1, 32),
                generated_household(tag, i),
                // household_id: import links by grid and address instead.
                String::new(),
                format!("第{}网格", i % 5 + 1),
                CATEGORIES[i % 7].0.to_string(),
                format!("第{i}次走访，情况\"良好\"，无异常"),
                serde_json::to_string(&[format!("王{i}"), format!("李{i}")]).expect("json"),
                if i % 2 == 0 {
                    String::new()
                } else {
                    format!("需要{i}")
                },
                generated_time(i),
                fake_hex(7, 64),
                "[]".to_string(),
            ]
        })
        .collect()
}

/// A whole visits CSV file (header and `n` generated rows).
pub fn generated_visits_csv(tag: &str, n: usize) -> String {
    let mut rows = vec![VISIT_KEYS.iter().map(|s| s.to_string()).collect()];
    rows.extend(generated_visit_rows(tag, n));
    write_csv(&rows)
}

/// A running `yizhan serve --listen 127.0.0.1:0 --no-discovery` (discovery off: tests of
/// one machine would otherwise see each other); SIGKILLed and reaped when dropped.
pub struct Serving {
    child: std::process::Child,
    /// The address it printed in its first line.
    pub addr: String,
}

impl Serving {
    /// Starts it and waits (at most 60 s) for `listening on HOST:PORT`.
    pub fn start(home: &Home) -> Serving {
        use std::io::{BufRead, BufReader};
        let mut child = home
            .command(
                false,
                &["serve", "--listen", "127.0.0.1:0", "--no-discovery"],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn yizhan serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Drains stdout for as long as the daemon runs, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let Ok(first) = rx.recv_timeout(std::time::Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve printed no `listening on HOST:PORT` within 60 s");
        };
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("serve's first line: {first:?}"))
            .trim()
            .to_string();
        Serving { child, addr }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The station enrolls `v` for `grids`; `v` joins with the token, the station at `addr`.
pub fn join(station: &Home, v: &Home, name: &str, grids: &[&str], addr: &str) {
    let mut args = vec!["enroll", v.device_id.as_str(), "--name", name];
    for g in grids {
        args.extend(["--grid", g]);
    }
    let token = station.json(&args)["token"]
        .as_str()
        .expect("enroll printed a token")
        .to_string();
    let joined = v.json(&["join", token.as_str(), "--station", addr]);
    assert_eq!(joined["role"], "volunteer", "{joined}");
    assert_eq!(
        joined["site_id"],
        station.json(&["id"])["site_id"],
        "join names another site: {joined}"
    );
}

/// The installed Chromium (for rendering the HTML the binary writes); panics with how to
/// install it when there is none.
pub fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!(
        "Chromium is not installed, so the HTML pages cannot be checked: install it with \
         `apt-get install -y --no-install-recommends chromium fonts-noto-cjk` (.ci/run does)"
    );
}

/// Runs `yizhan --home H ARGS` (no `--json`) in the language of `lang` (`LANG`, with the
/// other locale variables unset).
pub fn run_in(home: &Home, lang: &str, args: &[&str]) -> Output {
    home.command(false, args)
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", lang)
        .output()
        .expect("run yizhan")
}

/// [`run_in`], asserting success; returns stdout.
pub fn text_in(home: &Home, lang: &str, args: &[&str]) -> String {
    let out = run_in(home, lang, args);
    assert_success(&out, args);
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// [`run_in`], asserting exit 1 and one `error: ` line (`错误：` in Chinese); returns it.
pub fn error_in(home: &Home, lang: &str, args: &[&str]) -> String {
    let out = run_in(home, lang, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "`yizhan {}` in {lang}: {stderr}",
        show_args(args)
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
    stderr.trim_end().to_string()
}
