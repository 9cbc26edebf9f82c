//! Tests of the QUIC transport (`yizhan_node::net`), on loopback only.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use yizhan_node::net::{
    ALPN, Endpoint, NetConfig, NetError, PeerConnection, read_frame, write_frame,
};
use yizhan_protocol::{DeviceId, DeviceKey};

/// Records the largest single allocation the test binary asks for, so that a test can show
/// that a huge length prefix was refused *before* anything was allocated.
#[allow(unsafe_code)] // A GlobalAlloc impl needs `unsafe`; it only forwards to `System`.
mod largest_allocation {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub static LARGEST: AtomicUsize = AtomicUsize::new(0);

    pub struct Watch;

    unsafe impl GlobalAlloc for Watch {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: largest_allocation::Watch = largest_allocation::Watch;

const MIB: usize = 1024 * 1024;

/// Upper bound for any single step of a test, so that a broken transport fails instead of
/// hanging.
const STEP: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn device(n: u8) -> DeviceKey {
    DeviceKey::from_seed([n; 32])
}

fn config() -> NetConfig {
    NetConfig {
        connect_timeout: Duration::from_secs(5),
        ..NetConfig::default()
    }
}

fn bind(key: &DeviceKey) -> Arc<Endpoint> {
    Arc::new(Endpoint::bind(loopback(), key, &config()).expect("bind"))
}

fn addr(endpoint: &Endpoint) -> SocketAddr {
    endpoint.local_addr().expect("local addr")
}

/// Accepts one connection on `server` in the background.
fn accept_one(
    server: &Arc<Endpoint>,
) -> tokio::task::JoinHandle<Option<Result<PeerConnection, NetError>>> {
    let server = server.clone();
    tokio::spawn(async move { server.accept().await })
}

/// A connected pair: (client side, server side).
async fn connected_pair(
    server: &Arc<Endpoint>,
    client: &Endpoint,
) -> (PeerConnection, PeerConnection) {
    let accepting = accept_one(server);
    let outgoing = within("connect", client.connect(addr(server)))
        .await
        .expect("connect");
    let incoming = within("accept", accepting)
        .await
        .expect("accept task")
        .expect("endpoint open")
        .expect("handshake");
    (outgoing, incoming)
}

#[tokio::test]
async fn both_sides_see_each_others_device_id() {
    let (server_key, client_key) = (device(1), device(2));
    let server = bind(&server_key);
    let client = bind(&client_key);

    let (outgoing, incoming) = connected_pair(&server, &client).await;

    assert_eq!(outgoing.peer, server_key.device_id());
    assert_eq!(incoming.peer, client_key.device_id());
    for conn in [&outgoing.connection, &incoming.connection] {
        let data = conn
            .handshake_data()
            .expect("handshake data")
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .expect("rustls handshake data");
        assert_eq!(data.protocol.as_deref(), Some(ALPN));
    }
    client.close().await;
    server.close().await;
}

fn large_payload() -> Vec<u8> {
    (0..MIB).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn frames_flow_both_ways_and_end_cleanly() {
    let server = bind(&device(3));
    let client = bind(&device(4));
    let (outgoing, incoming) = connected_pair(&server, &client).await;
    let frames: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        Vec::new(),
        large_payload(),
        b"bye".to_vec(),
    ];

    // The server reads every frame until the clean end, then sends them all back reversed.
    let echo = tokio::spawn(async move {
        let (mut send, mut recv) = incoming.connection.accept_bi().await.expect("accept_bi");
        let mut got = Vec::new();
        while let Some(frame) = read_frame(&mut recv, 2 * MIB).await.expect("server read") {
            got.push(frame);
        }
        for frame in got.iter().rev() {
            write_frame(&mut send, frame).await.expect("server write");
        }
        send.finish().expect("server finish");
        send.stopped().await.expect("server stopped");
        got
    });

    let (mut send, mut recv) = outgoing.connection.open_bi().await.expect("open_bi");
    for frame in &frames {
        within("client write", write_frame(&mut send, frame))
            .await
            .expect("client write");
    }
    send.finish().expect("client finish");
    let mut back = Vec::new();
    while let Some(frame) = within("client read", read_frame(&mut recv, 2 * MIB))
        .await
        .expect("client read")
    {
        back.push(frame);
    }
    // The end stays the end.
    assert!(
        within("read after end", read_frame(&mut recv, 2 * MIB))
            .await
            .expect("read after end")
            .is_none()
    );

    let got = within("echo", echo).await.expect("echo task");
    assert_eq!(got, frames);
    back.reverse();
    assert_eq!(back, frames);
    client.close().await;
    server.close().await;
}

/// Sends `bytes` raw on a new stream and finishes it; returns what `read_frame` on the
/// other side makes of it.
async fn read_raw(bytes: &[u8], max_len: usize) -> Result<Option<Vec<u8>>, NetError> {
    let server = bind(&device(5));
    let client = bind(&device(6));
    let (outgoing, incoming) = connected_pair(&server, &client).await;
    let (mut send, _recv) = outgoing.connection.open_bi().await.expect("open_bi");
    send.write_all(bytes).await.expect("raw write");
    send.finish().expect("finish");
    let (_send, mut recv) = within("accept_bi", incoming.connection.accept_bi())
        .await
        .expect("accept_bi");
    let result = within("read_frame", read_frame(&mut recv, max_len)).await;
    client.close().await;
    server.close().await;
    result
}

#[tokio::test]
async fn oversized_length_is_refused_before_allocating() {
    // A header claiming 4 GiB (u32::MAX bytes) against a limit of 1 MiB, then a little data.
    let mut bytes = u32::MAX.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"not four gigabytes");
    let result = read_raw(&bytes, MIB).await;

    match result {
        Err(NetError::FrameTooLarge { len, max }) => {
            assert_eq!(len, u32::MAX);
            assert_eq!(max, MIB);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    // Nothing in this test binary ever asked for anything near the announced size.
    let largest = largest_allocation::LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < 256 * MIB,
        "largest allocation was {largest} bytes"
    );

    // One byte over the limit is refused too; exactly the limit is not the problem.
    let mut bytes = u32::try_from(MIB + 1).unwrap().to_be_bytes().to_vec();
    bytes.extend_from_slice(b"x");
    assert!(matches!(
        read_raw(&bytes, MIB).await,
        Err(NetError::FrameTooLarge { len, .. }) if len as usize == MIB + 1
    ));
}

#[tokio::test]
async fn stream_ending_mid_frame_is_an_error() {
    // The length prefix says 10 bytes, 3 arrive.
    let mut bytes = 10u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"abc");
    assert!(matches!(
        read_raw(&bytes, MIB).await,
        Err(NetError::TruncatedFrame { received: 7 })
    ));
    // The stream ends inside the length prefix.
    assert!(matches!(
        read_raw(&[0, 0], MIB).await,
        Err(NetError::TruncatedFrame { received: 2 })
    ));
    // An empty stream is a clean end.
    assert!(matches!(read_raw(&[], MIB).await, Ok(None)));
}

#[tokio::test]
async fn connect_to_refuses_another_device() {
    let server_key = device(7);
    let expected = device(8).device_id();
    let server = bind(&server_key);
    let client = bind(&device(9));
    let server_task = {
        let server = server.clone();
        tokio::spawn(async move {
            // The refused handshake, then the good one.
            let refused = server.accept().await;
            let accepted = server.accept().await;
            (refused, accepted)
        })
    };

    let error = within("connect_to", client.connect_to(addr(&server), expected))
        .await
        .expect_err("the wrong device must be refused");
    match &error {
        NetError::UnexpectedPeer {
            expected: e,
            actual,
            ..
        } => {
            assert_eq!(**e, expected);
            assert_eq!(**actual, server_key.device_id());
        }
        other => panic!("expected UnexpectedPeer, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&expected.to_string()), "{message}");
    assert!(
        message.contains(&server_key.device_id().to_string()),
        "{message}"
    );

    // The right id connects.
    let conn = within(
        "connect_to right id",
        client.connect_to(addr(&server), server_key.device_id()),
    )
    .await
    .expect("right device");
    assert_eq!(conn.peer, server_key.device_id());

    let (refused, accepted) = within("server", server_task).await.expect("server task");
    assert!(matches!(refused, Some(Err(_))), "{refused:?}");
    assert!(matches!(accepted, Some(Ok(_))), "{accepted:?}");
    client.close().await;
    server.close().await;
}

// ---- Clients and servers that do not play by the rules --------------------------------------

/// A client-side verifier that accepts any server: the misbehaving peers in these tests do
/// not care whom they talk to.
#[derive(Debug)]
struct AcceptAnyServer;

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Presents a fixed certificate and key, whether or not they belong together.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesClientCert for Fixed {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A fresh Ed25519 signing key that belongs to no certificate used here.
fn stray_ed25519_key() -> Arc<dyn rustls::sign::SigningKey> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519 key");
    rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(key.serialize_der()))
        .expect("load ed25519 key")
}

/// An ECDSA P-256 certificate (rcgen's default key type) and its key.
fn ecdsa_identity() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["yizhan".to_owned()]).expect("ecdsa");
    (
        certified.cert.der().clone(),
        PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
    )
}

/// A plain quinn client endpoint with the given rustls configuration.
fn raw_client(mut tls: rustls::ClientConfig) -> (quinn::Endpoint, quinn::ClientConfig) {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic client");
    let endpoint = quinn::Endpoint::client(loopback()).expect("client endpoint");
    (endpoint, quinn::ClientConfig::new(Arc::new(quic)))
}

fn client_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>
{
    rustls::ClientConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer))
}

/// A certificate the device `key` really uses, as any peer that connected to it has seen it.
async fn real_certificate_of(key: &DeviceKey) -> CertificateDer<'static> {
    let owner = bind(key);
    let observer = bind(&device(99));
    let (outgoing, _incoming) = connected_pair(&owner, &observer).await;
    let chain = outgoing
        .connection
        .peer_identity()
        .expect("identity")
        .downcast::<Vec<CertificateDer<'static>>>()
        .expect("certificates");
    observer.close().await;
    owner.close().await;
    chain[0].clone()
}

/// Connects with a misbehaving client and checks that it gets nowhere: its handshake fails or
/// its connection is closed at once, and the server's `accept` yields an error.
async fn assert_refused_by_server(server: &Arc<Endpoint>, tls: rustls::ClientConfig) -> NetError {
    let accepting = accept_one(server);
    let (endpoint, client_config) = raw_client(tls);
    let connecting = endpoint
        .connect_with(client_config, addr(server), "yizhan")
        .expect("start connecting");
    // In TLS 1.3 the client may finish its side of the handshake before the server has
    // judged its certificate; then the server closes the connection right away.
    if let Ok(connection) = within("bad client handshake", connecting).await {
        within("bad client closed", connection.closed()).await;
    }
    let error = match within("accept bad client", accepting).await.expect("task") {
        Some(Err(error)) => error,
        other => panic!("the server must refuse the bad client, got {other:?}"),
    };
    endpoint.close(0u32.into(), b"");
    error
}

/// The server (device `server_id`) still accepts a good client afterwards.
async fn assert_still_accepts(server: &Arc<Endpoint>, server_id: DeviceId) {
    let good = bind(&device(42));
    let (outgoing, incoming) = connected_pair(server, &good).await;
    assert_eq!(incoming.peer, device(42).device_id());
    assert_eq!(outgoing.peer, server_id);
    good.close().await;
}

#[tokio::test]
async fn server_refuses_client_with_ecdsa_certificate() {
    let server_key = device(10);
    let server = bind(&server_key);
    let (cert, key) = ecdsa_identity();
    let tls = client_builder()
        .with_client_auth_cert(vec![cert], key)
        .expect("client cert");
    let error = assert_refused_by_server(&server, tls).await;
    assert!(matches!(error, NetError::Handshake { .. }), "{error:?}");
    assert_still_accepts(&server, server_key.device_id()).await;
    server.close().await;
}

#[tokio::test]
async fn server_refuses_ecdsa_certificate_even_with_an_ed25519_signature() {
    // The certificate's key is ECDSA, the handshake is signed with some Ed25519 key: the
    // certificate check alone must refuse it.
    let server_key = device(11);
    let server = bind(&server_key);
    let (cert, _) = ecdsa_identity();
    let lying = Arc::new(CertifiedKey::new(vec![cert], stray_ed25519_key()));
    let tls = client_builder().with_client_cert_resolver(Arc::new(Fixed(lying)));
    let error = assert_refused_by_server(&server, tls).await;
    assert!(
        error.to_string().contains("Ed25519"),
        "refused for the wrong reason: {error}"
    );
    assert_still_accepts(&server, server_key.device_id()).await;
    server.close().await;
}

#[tokio::test]
async fn server_refuses_client_replaying_another_devices_certificate() {
    // Anyone can learn a device's certificate; without its key it proves nothing.
    let victim = device(12);
    let stolen = real_certificate_of(&victim).await;
    let server_key = device(13);
    let server = bind(&server_key);
    let impostor = Arc::new(CertifiedKey::new(vec![stolen], stray_ed25519_key()));
    let tls = client_builder().with_client_cert_resolver(Arc::new(Fixed(impostor)));
    let error = assert_refused_by_server(&server, tls).await;
    assert!(matches!(error, NetError::Handshake { .. }), "{error:?}");
    assert_still_accepts(&server, server_key.device_id()).await;
    server.close().await;
}

#[tokio::test]
async fn server_refuses_client_without_certificate() {
    let server_key = device(14);
    let server = bind(&server_key);
    let tls = client_builder().with_no_client_auth();
    let error = assert_refused_by_server(&server, tls).await;
    assert!(matches!(error, NetError::Handshake { .. }), "{error:?}");
    assert_still_accepts(&server, server_key.device_id()).await;
    server.close().await;
}

/// Runs a plain quinn server that presents `certified` (with ALPN yizhan/1, any client) and
/// returns the result of connecting to it with a real endpoint.
async fn connect_to_raw_server(certified: CertifiedKey) -> Result<PeerConnection, NetError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(Arc::new(certified))));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("quic server");
    let server =
        quinn::Endpoint::server(quinn::ServerConfig::with_crypto(Arc::new(quic)), loopback())
            .expect("raw server");
    let server_addr = server.local_addr().expect("addr");
    let accepting = {
        let server = server.clone();
        tokio::spawn(async move {
            if let Some(incoming) = server.accept().await {
                // The handshake is expected to fail; its result does not matter here.
                let _ = incoming.await;
            }
        })
    };
    let client = bind(&device(20));
    let result = within("connect to raw server", client.connect(server_addr)).await;
    within("raw server", accepting)
        .await
        .expect("raw server task");
    client.close().await;
    server.close(0u32.into(), b"");
    result
}

#[tokio::test]
async fn client_refuses_server_replaying_another_devices_certificate() {
    let stolen = real_certificate_of(&device(21)).await;
    let result = connect_to_raw_server(CertifiedKey::new(vec![stolen], stray_ed25519_key())).await;
    assert!(
        matches!(result, Err(NetError::Handshake { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn client_refuses_server_with_ecdsa_certificate() {
    let (cert, _) = ecdsa_identity();
    let result = connect_to_raw_server(CertifiedKey::new(vec![cert], stray_ed25519_key())).await;
    match result {
        Err(error @ NetError::Handshake { .. }) => {
            assert!(error.to_string().contains("Ed25519"), "{error}");
        }
        other => panic!("expected a failed handshake, got {other:?}"),
    }
}

#[tokio::test]
async fn close_ends_pending_accept_and_closes_connections() {
    let server = bind(&device(30));
    let client = bind(&device(31));
    let (outgoing, _incoming) = connected_pair(&server, &client).await;

    let pending = accept_one(&server);
    // Give the accept a moment to start waiting (close ends it either way).
    tokio::time::sleep(Duration::from_millis(20)).await;
    within("close", server.close()).await;

    assert!(
        within("pending accept", pending)
            .await
            .expect("task")
            .is_none()
    );
    assert!(
        within("accept after close", server.accept())
            .await
            .is_none()
    );
    // The open connection was closed with code 0.
    match within("connection closed", outgoing.connection.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(0));
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    // And nobody gets in any more.
    assert!(
        within("connect after close", client.connect(addr(&server)))
            .await
            .is_err()
    );
    // (The client is not closed: its refused attempt would keep `close` waiting for the
    // whole 2 s drain bound.)
}

#[test]
fn bind_outside_a_runtime_is_an_error() {
    assert!(matches!(
        Endpoint::bind(loopback(), &device(40), &NetConfig::default()),
        Err(NetError::NoRuntime)
    ));
}

#[tokio::test]
async fn unusable_configurations_are_refused() {
    let key = device(41);
    let bad = [
        NetConfig {
            max_streams_per_connection: 0,
            ..NetConfig::default()
        },
        NetConfig {
            keep_alive: Duration::from_secs(30),
            ..NetConfig::default()
        },
        NetConfig {
            connect_timeout: Duration::ZERO,
            ..NetConfig::default()
        },
    ];
    for config in bad {
        assert!(
            matches!(
                Endpoint::bind(loopback(), &key, &config),
                Err(NetError::InvalidConfig(_))
            ),
            "{config:?}"
        );
    }
    assert_eq!(
        NetConfig::default(),
        NetConfig {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_streams_per_connection: 4,
            listening: false,
        }
    );
}
