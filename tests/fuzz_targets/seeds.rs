//! The seed generator: real data made by the code, as inputs for every target.

use std::path::Path;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use yizhan_node::Node;
use yizhan_node::members::EnrollRequest;
use yizhan_node::records::{NewTicket, NewVisit, TicketUpdate, VisitEdit};
use yizhan_node::sync::{SyncConfig, SyncEngine};
use yizhan_protocol::MemberRole;
use yizhan_protocol::wire::Message;

use super::common::{init_node, keys};
use super::frame::encode_frames;
use super::ingest::{CaseChange, CaseDoc, encode_ingest};

/// One seed input: its target, a file name, and the bytes.
#[derive(Clone, Debug)]
pub struct Seed {
    /// The target it is for.
    pub target: &'static str,
    /// Its file name in the corpus.
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

/// Real data made by the code: a station and two volunteers (the test keys) make records,
/// enrol, sync and revoke; their frames, messages, envelopes, statements and tokens become
/// seed inputs for every target. Deterministic keys; times and nonces vary from run to run.
pub fn seeds() -> Vec<Seed> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: String, bytes: Vec<u8>| {
        out.push(Seed {
            target,
            name,
            bytes,
        })
    };
    let mut station = init_node(&dir.path().join("s"), "驿站", true, keys::ROOT);
    let mut vol = init_node(&dir.path().join("a"), "王芳", false, keys::VOLUNTEER);
    let mut revoked = init_node(&dir.path().join("b"), "李强", false, keys::REVOKED);
    let mut tokens = Vec::new();
    for (node, addr) in [(&mut vol, Some("192.0.2.1:7365")), (&mut revoked, None)] {
        let token = station
            .enroll(&EnrollRequest {
                device: node.identity().device_id,
                name: node.identity().name.clone(),
                grids: vec!["和平里".into(), "幸福路".into()],
                role: MemberRole::Volunteer,
                expires_days: Some(365),
            })
            .expect("enroll");
        let mut token = token;
        if let Some(a) = addr {
            token.station_addrs = vec![a.into()];
        }
        node.join(&token, None).expect("join");
        tokens.push(token);
    }

    // Records: visits and tickets by each, edits, comments.
    let visit = vol
        .add_visit(&NewVisit {
            household: "和平里 3-2-101".into(),
            note: Some("独居老人，需要定期探访".into()),
            residents: vec!["张大爷".into(), "张奶奶".into()],
            needs: Some("助餐".into()),
            ..NewVisit::default()
        })
        .expect("visit");
    vol.edit_visit(
        visit,
        &VisitEdit {
            note: Some("已联系社区食堂".into()),
            ..VisitEdit::default()
        },
    )
    .expect("edit");
    let ticket = vol
        .open_ticket(&NewTicket {
            title: "楼道灯坏了".into(),
            household: Some("和平里 3 号楼".into()),
            assignee: Some(station.identity().device_id),
            ..NewTicket::default()
        })
        .expect("ticket");
    vol.comment_ticket(ticket, "已报修").expect("comment");
    vol.update_ticket(
        ticket,
        &TicketUpdate {
            title: Some("楼道灯坏了（3 单元）".into()),
            ..TicketUpdate::default()
        },
    )
    .expect("update");
    let b_visit = revoked
        .add_visit(&NewVisit {
            household: "幸福路 8 号".into(),
            ..NewVisit::default()
        })
        .expect("visit");
    let s_ticket = station
        .open_ticket(&NewTicket {
            title: "垃圾清运".into(),
            grid: Some("和平里".into()),
            ..NewTicket::default()
        })
        .expect("ticket");

    // envelope: every change, with the lawful signature option (0) and a few others.
    let mut all_changes = Vec::new();
    for (node, doc) in [
        (&vol, visit),
        (&vol, ticket),
        (&revoked, b_visit),
        (&station, s_ticket),
    ] {
        let dc = node.doc_changes(doc).expect("changes");
        for (i, env) in dc.changes.iter().enumerate() {
            let tag = &hex::encode(doc.as_bytes())[..8];
            let mut lawful = vec![0u8];
            lawful.extend_from_slice(&env.bytes);
            add("envelope", format!("change-{tag}-{i}"), lawful);
        }
        all_changes.push(dc);
    }
    if let Some(first) = all_changes.first().and_then(|d| d.changes.first()) {
        for opts in [1u8, 2, 0x10] {
            let mut v = vec![opts];
            v.extend_from_slice(&first.bytes);
            add("envelope", format!("change-opts-{opts:02x}"), v);
        }
    }
    // Run lengths rewritten: every column, the action column, the others; at 1, at the
    // limit, one over, i64::MAX; on a one-operation change (a note edited) and on a first
    // change.
    for (tag, env) in [
        ("edit", all_changes.first().and_then(|d| d.changes.get(1))),
        ("first", all_changes.first().and_then(|d| d.changes.first())),
    ] {
        let Some(env) = env else { continue };
        for opts in [0x44u8, 0x48, 0x4c, 0x40, 0x88, 0xc4] {
            let mut v = vec![opts];
            v.extend_from_slice(&env.bytes);
            add("envelope", format!("change-runs-{tag}-{opts:02x}"), v);
        }
    }

    // ingest: each document's history with its header; the revoked author's visit (the
    // station holds it in quarantine); a batch of everything; a misfiled change.
    let mut every = Vec::new();
    for dc in &all_changes {
        let author = keys::all()
            .iter()
            .position(|k| k.device_id() == dc.header.author)
            .unwrap_or(1) as u8;
        let doc = CaseDoc {
            kind: dc.header.kind.code(),
            author,
            nonce: dc.header.nonce,
            misfiled: 0,
            changes: dc
                .changes
                .iter()
                .map(|c| CaseChange {
                    signer: 0xff,
                    how: 0,
                    bytes: c.bytes.clone(),
                })
                .collect(),
        };
        let tag = &hex::encode(dc.header.doc_id().as_bytes())[..8];
        add(
            "ingest",
            format!("doc-{tag}"),
            encode_ingest(std::slice::from_ref(&doc)),
        );
        every.push(doc);
    }
    add("ingest", "batch".into(), encode_ingest(&every));
    if let Some(first) = every.first() {
        let mut misfiled = first.clone();
        misfiled.misfiled = 9;
        add("ingest", "misfiled".into(), encode_ingest(&[misfiled]));
        let mut unsigned = first.clone();
        for c in &mut unsigned.changes {
            c.how = 2;
        }
        add("ingest", "unsigned".into(), encode_ingest(&[unsigned]));
        let mut tail = first.clone();
        tail.changes.remove(0);
        add("ingest", "no-history".into(), encode_ingest(&[tail]));
        // The history with its later changes' runs rewritten (see `CaseChange::how`):
        // every column at the limit, one over, at 2^24; the action column alone one under.
        for how in [0x20u8, 0x28, 0x30, 0x58] {
            let mut runs = first.clone();
            for c in runs.changes.iter_mut().skip(1) {
                c.how = how;
            }
            add("ingest", format!("runs-{how:02x}"), encode_ingest(&[runs]));
        }
    }

    // token and statement: the enrolment tokens and their certificates.
    for (i, t) in tokens.iter().enumerate() {
        let text = t.to_text();
        let mut typed = vec![0u8];
        typed.extend_from_slice(format!(" {text}\n").as_bytes());
        add("token", format!("token-{i}"), typed);
        let mut raw = vec![1u8];
        let body = text
            .strip_prefix(yizhan_protocol::membership::TOKEN_PREFIX)
            .expect("a token's text starts with its prefix");
        raw.extend_from_slice(&URL_SAFE_NO_PAD.decode(body).expect("a token's base64"));
        add("token", format!("token-raw-{i}"), raw);
        let mut whole = vec![0u8];
        whole.extend_from_slice(&t.cert.to_bytes());
        add("statement", format!("cert-{i}"), whole);
        let mut body = vec![4u8];
        body.extend_from_slice(&t.cert.body);
        add("statement", format!("cert-body-{i}"), body);
    }

    // Revoke B, then sync A with the station: the frames both ways are real messages
    // (Hello, Roster, Pull, Changes, Fetch, Fetched, Done with a receipt).
    station
        .revoke(revoked.identity().device_id, "left the site")
        .expect("revoke");
    let (to_station, to_volunteer) = record_sync(station, vol);
    for (side, frames) in [("to-station", &to_station), ("to-volunteer", &to_volunteer)] {
        for (i, f) in frames.iter().enumerate() {
            let name = Message::decode(f).map_or("bad", |m| m.name());
            add(
                "frame",
                format!("{side}-{i}-{name}"),
                encode_frames([&f[..]]),
            );
            let mut single = vec![0u8];
            single.extend_from_slice(&encode_frames([&f[..]]));
            add("message", format!("{side}-{i}-{name}"), single);
            if let Ok(Message::Roster(r)) = Message::decode(f) {
                for (j, rv) in r.revocations.iter().enumerate() {
                    let mut whole = vec![1u8];
                    whole.extend_from_slice(&rv.to_bytes());
                    add("statement", format!("revocation-{j}"), whole);
                    let mut body = vec![4 + 1];
                    body.extend_from_slice(&rv.body);
                    add("statement", format!("revocation-body-{j}"), body);
                }
            }
            if let Ok(Message::Done(d)) = Message::decode(f)
                && let Some(r) = d.receipt
            {
                let mut whole = vec![2u8];
                whole.extend_from_slice(&r.to_bytes());
                add("statement", "receipt".into(), whole);
                let mut body = vec![4 + 2];
                body.extend_from_slice(&r.body);
                add("statement", "receipt-body".into(), body);
            }
        }
        let stream = encode_frames(frames.iter().map(|f| &f[..]));
        add("frame", format!("{side}-all"), stream.clone());
        for opts in [0u8, 0x02, 0x0c, 0x18, 0x04] {
            let mut whole = vec![opts];
            whole.extend_from_slice(&stream);
            add("message", format!("{side}-all-{opts:02x}"), whole);
        }
    }
    // The short messages of docs/protocol.md §5.4, and a refusal.
    for (name, bytes) in [
        ("done-none", vec![7u8, 0]),
        ("refuse", vec![1, 2, b'n', b'o']),
        ("roster-empty", vec![2, 0, 0]),
        ("changes-empty", vec![4, 5, 9, 1, 0]),
    ] {
        add(
            "frame",
            format!("short-{name}"),
            encode_frames([&bytes[..]]),
        );
    }
    out
}

/// Runs one sync between a station and a volunteer through their real engines, with no
/// faults, and returns the frames each received.
fn record_sync(station: Node, vol: Node) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let config = SyncConfig::default();
    let now = Instant::now();
    let (s_id, v_id) = (station.identity().device_id, vol.identity().device_id);
    let mut s = SyncEngine::new(station, v_id, &config, now).expect("station engine");
    let mut v = SyncEngine::new(vol, s_id, &config, now).expect("volunteer engine");
    let (mut to_s, mut to_v) = (Vec::new(), Vec::new());
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(f) = v.poll_transmit().expect("volunteer transmit") {
            s.handle_frame(&f, now).expect("station receives");
            to_s.push(f);
            moved = true;
        }
        while let Some(f) = s.poll_transmit().expect("station transmit") {
            v.handle_frame(&f, now).expect("volunteer receives");
            to_v.push(f);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(
        s.is_finished() && v.is_finished(),
        "the recorded sync finished"
    );
    (to_s, to_v)
}

/// Writes the seeds into `corpus/<target>/seed-<name>` under `root` (the `fuzz/`
/// directory), leaving other files alone.
pub fn write_seeds(root: &Path) -> std::io::Result<usize> {
    let seeds = seeds();
    for s in &seeds {
        let dir = root.join("corpus").join(s.target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{}", s.name)), &s.bytes)?;
    }
    Ok(seeds.len())
}
