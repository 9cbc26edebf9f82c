//! The station office in Chinese: a day at a station and two laptops, one set to Chinese by
//! its locale, one by `config.toml`, one left in English, each reading what the others
//! wrote. Human output follows the language; members print by name; `--json` never
//! changes; long text comes from files and standard input.

use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::util::{
    Home, Serving, assert_success, error_in, id_of, join, run_in, show_args, text_in,
};

/// `yizhan --home DIR --json ARGS` in the locale `lang`.
fn json_in(home: &Home, lang: &str, args: &[&str]) -> Output {
    home.command(true, args)
        .env("LANG", lang)
        .output()
        .expect("run yizhan")
}

/// Runs with `--json` and `stdin` fed to the command.
fn json_with_stdin(home: &Home, args: &[&str], stdin: &str) -> Value {
    let mut child = home
        .command(true, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert_success(&out, args);
    serde_json::from_slice(&out.stdout).expect("one JSON value")
}

const ZH: &str = "zh_CN.UTF-8";
const C: &str = "C";

#[test]
fn a_day_in_chinese_and_in_english() {
    let station = Home::station();
    // The station's office set Chinese in its config file, whatever the locale says.
    std::fs::write(station.path().join("config.toml"), "lang = \"zh\"\n").expect("config");
    let serving = Serving::start(&station);
    let li = Home::new();
    let wang = Home::new();
    join(&station, &li, "李强", &["幸福里一网格"], &serving.addr);
    join(&station, &wang, "王芳", &["幸福里二网格"], &serving.addr);

    // 李强's laptop speaks Chinese by its locale. A note longer than a command line may
    // hold comes from a file; text that begins with '-' is text.
    let long_note: String = "老人独居，子女在外地工作。".repeat(1_500);
    let note_file = li.scratch("note.txt");
    std::fs::write(&note_file, format!("{long_note}\n")).expect("note");
    let note_path = note_file.to_str().expect("path");
    let visit = li.json(&[
        "visit",
        "add",
        "--household",
        "幸福路12号",
        "--resident",
        "张秀英",
        "--category",
        "为民服务",
        "--note-file",
        note_path,
    ]);
    let visit = id_of(&visit);
    assert_eq!(li.visit(&visit)["note"], long_note.as_str());
    let ticket = li.json(&[
        "ticket",
        "open",
        "--title",
        "屋顶漏水",
        "--household",
        "幸福路12号",
        "--note",
        "-组织物业上门查看",
        "--priority",
        "紧急",
    ]);
    let ticket = id_of(&ticket);
    assert_eq!(li.ticket(&ticket)["note"], "-组织物业上门查看");
    assert_eq!(li.ticket(&ticket)["priority"], "urgent");
    li.json(&["sync"]);

    // The station assigns it to 李强 by name, with Chinese words for status and priority.
    station.json(&[
        "ticket",
        "update",
        &ticket,
        "--assign",
        "李强",
        "--status",
        "处理中",
    ]);
    let comment = "已联系物业。\n明天上午九点上门。";
    json_with_stdin(
        &station,
        &["ticket", "comment", &ticket, "--file", "-"],
        comment,
    );
    assert_eq!(station.ticket(&ticket)["assignee"], li.device_id.as_str());

    // The station's own output is Chinese (config.toml), even under LANG=C.
    let list = text_in(&station, C, &["ticket", "list"]);
    for word in [
        "编号",
        "状态",
        "承办人",
        "处理中",
        "紧急",
        "屋顶漏水",
        "李强",
    ] {
        assert!(list.contains(word), "{word} missing from:\n{list}");
    }
    assert!(!list.contains(&li.device_id[..12]), "hex in:\n{list}");
    let show = text_in(&station, C, &["ticket", "show", &ticket]);
    for word in [
        "跟进记录",
        "修改历史",
        "已联系物业。",
        "明天上午九点上门。",
        "登记工单",
        "李强",
    ] {
        assert!(show.contains(word), "{word} missing from:\n{show}");
    }
    // Times as Chinese readers write them.
    assert!(
        show.contains("年") && show.contains("月") && show.contains("日"),
        "{show}"
    );
    // `--lang en` wins over the config file.
    let en = text_in(&station, C, &["--lang", "en", "ticket", "list"]);
    for word in ["ID", "STATUS", "ASSIGNEE", "in_progress", "李强"] {
        assert!(en.contains(word), "{word} missing from:\n{en}");
    }
    assert!(!en.contains("处理中"), "{en}");

    // 王芳's laptop is left in English: the same commands, in English.
    wang.json(&["sync"]);
    let status = text_in(&wang, C, &["status"]);
    assert!(
        status.contains("records") && status.contains("0 visits"),
        "{status}"
    );
    let status_zh = text_in(&wang, ZH, &["status"]);
    assert!(status_zh.contains("走访 0 条"), "{status_zh}");

    // JSON does not depend on the language, byte for byte.
    li.json(&["sync"]);
    for args in [
        &["ticket", "show", ticket.as_str()][..],
        &["visit", "list"][..],
        &["members"][..],
        &["household", "list"][..],
    ] {
        let zh = json_in(&li, ZH, args);
        let c = json_in(&li, C, args);
        assert_success(&zh, args);
        assert_eq!(zh.stdout, c.stdout, "{}", show_args(args));
    }

    // 李强 reads it all in Chinese: his name where the station wrote 李强's id.
    let due = text_in(&li, ZH, &["due"]);
    assert!(
        due.contains("快到期的工单") && due.contains("屋顶漏水"),
        "{due}"
    );
    assert!(due.contains("李强"), "{due}");
    let history = text_in(&li, ZH, &["visit", "show", &visit]);
    assert!(
        history.contains("走访时间") && history.contains("新增走访"),
        "{history}"
    );

    // Error lines follow the language; exit codes do not.
    let zh_error = error_in(&li, ZH, &["ticket", "show", "abc"]);
    assert!(zh_error.starts_with("错误："), "{zh_error}");
    assert!(zh_error.contains("太短"), "{zh_error}");
    let c_error = error_in(&li, C, &["ticket", "show", "abc"]);
    assert!(
        c_error.starts_with("error: ") && c_error.contains("too short"),
        "{c_error}"
    );
    let refused = error_in(
        &li,
        ZH,
        &["visit", "add", "--household", "x", "--grid", "幸福里二网格"],
    );
    assert!(refused.contains("不是本网格员的网格"), "{refused}");
    let refused = error_in(&station, C, &["ticket", "open", "--title", "无网格"]);
    assert!(refused.contains("驿站记录须指明网格"), "{refused}");
    let out = run_in(&li, ZH, &["--lang", "fr", "status"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown --lang is a usage error"
    );
}

#[test]
fn members_who_share_a_name_are_told_apart_by_their_ids() {
    let station = Home::station();
    let serving = Serving::start(&station);
    let a = Home::new();
    let b = Home::new();
    join(&station, &a, "张伟", &["一网格"], &serving.addr);
    join(&station, &b, "张伟", &["一网格"], &serving.addr);
    let ticket = station.json(&["ticket", "open", "--title", "路灯不亮", "--grid", "一网格"]);
    let ticket = id_of(&ticket);
    // A shared name is not enough to assign by; the id is.
    let error = error_in(
        &station,
        C,
        &["ticket", "update", &ticket, "--assign", "张伟"],
    );
    assert!(
        error.contains(&a.device_id[..12]) && error.contains(&b.device_id[..12]),
        "{error}"
    );
    station.json(&["ticket", "update", &ticket, "--assign", &a.device_id[..10]]);
    let list = text_in(&station, ZH, &["ticket", "list"]);
    assert!(
        list.contains(&format!("张伟 ({})", &a.device_id[..6])),
        "{list}"
    );
}

#[test]
fn long_text_from_files_and_standard_input() {
    let station = Home::station();
    let ticket =
        id_of(&station.json(&["ticket", "open", "--title", "噪音扰民", "--grid", "一网格"]));
    // A comment from standard input, several lines, as typed.
    json_with_stdin(
        &station,
        &["ticket", "comment", &ticket, "--file", "-"],
        "第一行\n第二行\n",
    );
    let shown = station.ticket(&ticket);
    assert_eq!(shown["comments"][0]["text"], "第一行\n第二行");
    // A file that is not text, or too long for a record, changes nothing.
    let before = station.snapshot();
    let binary = station.scratch("photo.jpg");
    std::fs::write(&binary, [0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]).expect("write");
    let error = error_in(
        &station,
        C,
        &[
            "ticket",
            "comment",
            &ticket,
            "--file",
            binary.to_str().expect("path"),
        ],
    );
    assert!(error.contains("not UTF-8 text"), "{error}");
    let huge = station.scratch("huge.txt");
    std::fs::write(&huge, "长".repeat(100_000)).expect("write");
    let error = error_in(
        &station,
        ZH,
        &[
            "visit",
            "edit",
            &ticket,
            "--note-file",
            huge.to_str().expect("path"),
        ],
    );
    assert!(error.starts_with("错误："), "{error}");
    let error = error_in(
        &station,
        C,
        &[
            "ticket",
            "update",
            &ticket,
            "--note-file",
            huge.to_str().expect("path"),
        ],
    );
    assert!(
        error.contains("longer than a record's text may be"),
        "{error}"
    );
    let missing = error_in(
        &station,
        C,
        &["ticket", "update", &ticket, "--note-file", "nowhere.txt"],
    );
    assert!(missing.contains("cannot read nowhere.txt"), "{missing}");
    assert_eq!(station.snapshot(), before);
    // --note and --note-file together, or a comment with neither text nor file: usage.
    station.usage_error(&[
        "ticket",
        "update",
        &ticket,
        "--note",
        "a",
        "--note-file",
        "-",
    ]);
    station.usage_error(&["ticket", "comment", &ticket]);
}

#[test]
fn the_passphrase_prompt_speaks_the_language() {
    let home = Home::encrypted("一二三四五六");
    let mut cmd = home.command(false, &["status"]);
    cmd.env_remove("YIZHAN_PASSPHRASE").env("LANG", ZH);
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("错误：") && stderr.contains("口令"),
        "{stderr}"
    );
    let wrong = home
        .command(false, &["status"])
        .env("YIZHAN_PASSPHRASE", "不对")
        .env("LANG", ZH)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("口令不对"), "{stderr}");
}
