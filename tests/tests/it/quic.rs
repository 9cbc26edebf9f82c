//! Syncs over real QUIC on loopback through the node's daemon functions.

use std::time::Duration;

use yizhan_node::daemon::ServeConfig;
use yizhan_node::records::NewVisit;
use yizhan_tests::{TestNode, enroll, serve};

fn visits(n: usize, prefix: &str) -> Vec<NewVisit> {
    (0..n)
        .map(|i| NewVisit {
            household: format!("{prefix} {i} 号"),
            note: Some("走访记录：家中两位老人，身体尚可，需要冬季取暖补贴。".repeat(8)),
            ..NewVisit::default()
        })
        .collect()
}

/// Both sides have more to send than a stream's window holds: the sync must not stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_with_much_to_send_both_ways_completes() {
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("王芳");
    enroll(&mut station, &mut a, &["和平里"]);
    let n = 1500;
    station
        .node
        .add_visits(
            &visits(n, "和平里 站")
                .into_iter()
                .map(|v| NewVisit {
                    grid: Some("和平里".into()),
                    ..v
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    a.node.add_visits(&visits(n, "和平里 王")).unwrap();

    let served = serve(&station, ServeConfig::default().max_peers).await;
    let addr = served.addr;
    let report = tokio::time::timeout(
        Duration::from_secs(300),
        yizhan_tests::sync_once(&a.node.home_handle(), addr),
    )
    .await
    .expect("the sync stalled")
    .expect("sync");
    // Each visit, and the household it made.
    assert_eq!(report.stats.sent, 2 * n as u64);
    assert_eq!(report.stats.received, 2 * n as u64);
    served.stop().await;
    a.reopen();
    station.reopen();
    assert_eq!(a.node.record_counts().unwrap().1, 2 * n as u64);
    assert_eq!(station.node.record_counts().unwrap().1, 2 * n as u64);
}

/// Peers that start a handshake and then fall silent (laptops killed in the middle of it,
/// or a hostile peer) hold up no one: another member's sync completes meanwhile. Three
/// stalled handshakes would hold a station that completed handshakes one at a time for
/// three times the handshake timeout, longer than the member waits for its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_hold_up_no_one() {
    use yizhan_node::net::{Endpoint, NetConfig};
    let mut station = TestNode::station("幸福驿站");
    let mut a = TestNode::new("王芳");
    enroll(&mut station, &mut a, &["和平里"]);
    a.node.add_visits(&visits(3, "和平里 王")).unwrap();

    let served = serve(&station, ServeConfig::default().max_peers).await;
    let addr = served.addr;

    // Each stalled peer: a real client's first datagram, caught on a socket of ours and
    // passed to the station from it; nothing the station answers is ever passed back.
    let mut silent = Vec::new();
    for _ in 0..3 {
        let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = relay.local_addr().unwrap();
        let key = TestNode::new("沉默").node.device_key();
        let client =
            Endpoint::bind("127.0.0.1:0".parse().unwrap(), &key, &NetConfig::default()).unwrap();
        let dialling = tokio::spawn(async move {
            let _ = client.connect(relay_addr).await;
        });
        let mut first = vec![0u8; 2048];
        let (n, _) = relay.recv_from(&mut first).await.unwrap();
        relay.send_to(&first[..n], addr).await.unwrap();
        silent.push((relay, dialling));
    }

    let report = tokio::time::timeout(
        Duration::from_secs(120),
        yizhan_tests::sync_once(&a.node.home_handle(), addr),
    )
    .await
    .expect("the sync stalled")
    .expect("a member syncs while other handshakes stall");
    // Three visits, each with the household it made.
    assert_eq!(report.stats.sent, 6);
    for (_, dialling) in silent {
        dialling.abort();
    }
    served.stop().await;
}

/// A site's evening: more laptops than the station ever completed handshakes for at once
/// (16, before) sync with it at the same moment. Every one is let in and stored; none is
/// turned away at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_site_syncing_at_once_is_let_in_and_stored() {
    let mut station = TestNode::station("幸福驿站");
    let laptops = 24;
    let mut nodes = Vec::new();
    for i in 0..laptops {
        let mut laptop = TestNode::new(&format!("网格员 {i}"));
        let grid = format!("网格 {i}");
        enroll(&mut station, &mut laptop, &[grid.as_str()]);
        laptop.node.add_visits(&visits(5, &grid)).unwrap();
        nodes.push(laptop);
    }
    let served = serve(&station, ServeConfig::default().max_peers).await;
    let addr = served.addr;
    let syncs: Vec<_> = nodes
        .iter()
        .map(|n| {
            let home = n.node.home_handle();
            tokio::spawn(async move { yizhan_tests::sync_once(&home, addr).await })
        })
        .collect();
    for (i, sync) in syncs.into_iter().enumerate() {
        let report = tokio::time::timeout(Duration::from_secs(300), sync)
            .await
            .expect("a sync stalled")
            .expect("the sync task")
            .unwrap_or_else(|e| panic!("laptop {i}: {e}"));
        // Five visits, each with the household it made.
        assert_eq!(report.stats.sent, 10, "laptop {i}");
    }
    served.stop().await;
    station.reopen();
    assert_eq!(station.node.record_counts().unwrap().1, 5 * laptops as u64);
    assert_eq!(station.node.verify().unwrap().bad, 0);
}
