//! QUIC transport between yizhan nodes.
//!
//! Every node runs one [`Endpoint`]: a single UDP socket that both accepts connections and
//! makes them. Connections are QUIC over TLS 1.3 with ALPN [`ALPN`] and **mutual**
//! authentication by device key:
//!
//! - Each side presents a self-signed X.509 certificate made (with rcgen) from its own
//!   ed25519 [`DeviceKey`]. The certificate is only a wrapper for the public key: there is no
//!   CA and no name check, and its own signature, names and dates are ignored.
//! - Each side's verifier accepts exactly one end-entity certificate whose
//!   SubjectPublicKeyInfo is an Ed25519 key that is a valid [`DeviceId`], and checks the TLS 1.3
//!   handshake signature (scheme `ED25519` only; TLS 1.2 signatures are refused) against that
//!   key. A completed handshake therefore proves that the peer holds the secret key of the
//!   [`DeviceId`] reported in [`PeerConnection::peer`], which is read back from the peer's
//!   certificate after the handshake.
//! - No 0-RTT and no session resumption: every connection does a full handshake, so every
//!   connection is authenticated by a fresh signature.
//!
//! Who may connect is not decided here: any device with a valid key completes the handshake
//! with [`Endpoint::accept`] and [`Endpoint::connect`]; the caller checks
//! [`PeerConnection::peer`]. [`Endpoint::connect_to`] refuses any device but the expected one.
//!
//! Application data travels on bidirectional streams as length-prefixed frames
//! ([`write_frame`], [`read_frame`]). Unidirectional streams and datagrams are disabled.
//!
//! Nothing is installed globally: the configurations name the `ring` crypto provider
//! explicitly.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::spki::der::{self, Encode, asn1::OctetStringRef};
use ed25519_dalek::pkcs8::{ALGORITHM_ID, DecodePublicKey, PrivateKeyInfoRef};
use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use yizhan_protocol::frame::{self, FrameDecoder, FrameError, PayloadTooLarge};
use yizhan_protocol::{DeviceId, DeviceKey};

/// The ALPN protocol name of yizhan's sync protocol, version 1.
pub const ALPN: &[u8] = b"yizhan/1";

/// The same protocol, offered first by an endpoint that listens (`serve`): it says that the
/// connection comes from the socket the dialer accepts connections on, so that its source
/// address is worth dialing back. An endpoint that only dials (a one-shot `sync`, from an
/// ephemeral port) offers [`ALPN`] alone. A node that does not know this name picks
/// [`ALPN`]; the protocol spoken is the same either way.
pub const ALPN_LISTENING: &[u8] = b"yizhan/1+listening";

/// TLS server name the client sends. It is never checked: identity is the key.
const SERVER_NAME: &str = "yizhan";

/// Per-stream receive window: how much one stream may have in flight unread.
const STREAM_RECEIVE_WINDOW: u32 = 1024 * 1024;

/// Per-connection receive window, over all streams.
const CONNECTION_RECEIVE_WINDOW: u32 = 4 * 1024 * 1024;

/// Per-connection send window.
const SEND_WINDOW: u64 = 4 * 1024 * 1024;

/// The UDP socket's receive buffer asked of the kernel (which caps it at
/// `net.core.rmem_max`). Twenty laptops sending their pages to a station at once overflowed
/// Linux's default (≈ 208 KiB): ≈ 2% of the datagrams were dropped and sent again.
const SOCKET_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// How long [`Endpoint::close`] waits for peers to acknowledge the close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Application close code for a normal close.
const CLOSE_NORMAL: u32 = 0;

/// Application close code for a peer whose identity could not be read or was not the one
/// expected.
const CLOSE_BAD_PEER: u32 = 1;

/// Transport settings. The same settings apply to connections made and accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// A connection with no traffic for this long is closed (both sides use the smaller of
    /// their two values).
    pub idle_timeout: Duration,
    /// Interval of keep-alive packets on an otherwise idle connection. Must be shorter than
    /// `idle_timeout`.
    pub keep_alive: Duration,
    /// Longest time a handshake may take, outgoing ([`Endpoint::connect`]) or incoming
    /// ([`Endpoint::accept`]).
    pub connect_timeout: Duration,
    /// How many bidirectional streams the peer may have open at once on one connection.
    pub max_streams_per_connection: u32,
    /// Whether the endpoint's socket is where this node accepts connections (`serve`), so
    /// that peers may dial back the address its connections come from ([`ALPN_LISTENING`]).
    pub listening: bool,
}

impl Default for NetConfig {
    /// 30 s idle timeout, 10 s keep-alive, 10 s connect timeout, 4 streams per connection.
    fn default() -> Self {
        NetConfig {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_streams_per_connection: 4,
            listening: false,
        }
    }
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// [`Endpoint::bind`] was called outside a Tokio runtime.
    #[error("the QUIC endpoint must be created inside a Tokio runtime")]
    NoRuntime,
    /// A [`NetConfig`] value is unusable.
    #[error("invalid network configuration: {0}")]
    InvalidConfig(&'static str),
    /// The device key could not be encoded as PKCS#8.
    #[error("cannot encode the device key as PKCS#8: {0}")]
    KeyEncoding(#[source] der::Error),
    /// The device certificate could not be made.
    #[error("cannot make the device certificate: {0}")]
    Certificate(#[source] rcgen::Error),
    /// The TLS configuration could not be built.
    #[error("cannot set up TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The TLS configuration is unusable for QUIC.
    #[error("cannot set up QUIC TLS: {0}")]
    QuicTls(#[source] NoInitialCipherSuite),
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The socket's local address could not be read.
    #[error("cannot read the local address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// A connection could not be started (bad address, endpoint closed, ...).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The peer's address.
        addr: SocketAddr,
        /// Why quinn refused to start.
        #[source]
        source: quinn::ConnectError,
    },
    /// The QUIC or TLS handshake failed: unreachable peer, refused certificate, wrong ALPN,
    /// closed endpoint, ...
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        /// The peer's address.
        addr: SocketAddr,
        /// Why the connection failed.
        #[source]
        source: quinn::ConnectionError,
    },
    /// The handshake did not finish within [`NetConfig::connect_timeout`].
    #[error("handshake with {addr} timed out after {after:?}")]
    Timeout {
        /// The peer's address.
        addr: SocketAddr,
        /// The timeout that ran out.
        after: Duration,
    },
    /// [`Endpoint::connect_to`] reached a different device than the one expected.
    #[error("{addr} is device {actual}, not the expected device {expected}")]
    UnexpectedPeer {
        /// The peer's address.
        addr: SocketAddr,
        /// The device asked for.
        expected: Box<DeviceId>,
        /// The device that answered.
        actual: Box<DeviceId>,
    },
    /// After the handshake, the peer's device id could not be read from its certificate.
    #[error("cannot read the device id of {addr}: {reason}")]
    PeerIdentity {
        /// The peer's address.
        addr: SocketAddr,
        /// What was wrong.
        reason: &'static str,
    },
    /// A frame could not be written.
    #[error("cannot write frame: {0}")]
    Write(#[source] quinn::WriteError),
    /// A frame could not be read.
    #[error("cannot read frame: {0}")]
    Read(#[source] quinn::ReadError),
    /// A received frame announced a length above the reader's limit. Nothing was allocated.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced length.
        len: u32,
        /// The reader's limit.
        max: usize,
    },
    /// A payload to send does not fit a frame (more than `u32::MAX` bytes).
    #[error("payload of {len} bytes is too large for a frame")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended in the middle of a frame, after {received} bytes of it")]
    TruncatedFrame {
        /// Bytes of the frame (length prefix included) received before the end.
        received: usize,
    },
}

/// An authenticated connection to another device.
#[derive(Debug, Clone)]
pub struct PeerConnection {
    /// The QUIC connection. Open bidirectional streams with `open_bi` / `accept_bi`.
    pub connection: quinn::Connection,
    /// The peer's device, proven by the TLS handshake.
    pub peer: DeviceId,
    /// Whether the peer's address is one it accepts connections on: the address dialed, for
    /// a connection this node made; for one it accepted, whether the peer said so
    /// ([`ALPN_LISTENING`]). Only such an address is worth remembering to dial back.
    pub peer_listens: bool,
}

impl PeerConnection {
    /// Closes the connection normally and waits until its close packet has been handed to
    /// the socket (at most `wait`), not for QUIC's draining period: for a one-shot sync
    /// whose peer has already read everything, the peer only needs to be told, so that it
    /// frees the connection at once instead of at its idle timeout.
    pub async fn close_told(&self, wait: Duration) {
        let sent = |c: &quinn::Connection| c.stats().udp_tx.datagrams;
        let before = sent(&self.connection);
        self.connection
            .close(VarInt::from_u32(CLOSE_NORMAL), b"done");
        let deadline = tokio::time::Instant::now() + wait;
        // The connection's driver (another task) writes the close packet as soon as it runs;
        // its datagram count moves when it has. A connection the peer already closed sends
        // nothing, and the deadline ends the wait. (The timer wakes at its 1 ms granularity.)
        while sent(&self.connection) == before && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
    }
}

/// This device's TLS identity and the settings shared by all its connections.
struct LocalIdentity {
    device: DeviceId,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    provider: Arc<CryptoProvider>,
    transport: Arc<TransportConfig>,
    connect_timeout: Duration,
    listening: bool,
}

/// A QUIC endpoint on one UDP socket that accepts connections from other devices and
/// connects to them.
pub struct Endpoint {
    endpoint: quinn::Endpoint,
    identity: LocalIdentity,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("device", &self.identity.device)
            .field("local_addr", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Binds a UDP socket at `addr` (port 0 picks a free port) and starts accepting
    /// connections authenticated by `key`. Must be called inside a Tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        key: &DeviceKey,
        config: &NetConfig,
    ) -> Result<Endpoint, NetError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(NetError::NoRuntime);
        }
        let transport = Arc::new(transport_config(config)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert, pkcs8) = device_certificate(key)?;
        let identity = LocalIdentity {
            device: key.device_id(),
            cert,
            key: pkcs8,
            provider,
            transport,
            connect_timeout: config.connect_timeout,
            listening: config.listening,
        };
        let server_config = identity.server_config()?;
        // Build one client configuration now so that a problem shows at bind, not at the
        // first connect.
        identity.client_config(None, Arc::new(OnceLock::new()))?;
        let bind = |addr| -> std::io::Result<quinn::Endpoint> {
            let socket = std::net::UdpSocket::bind(addr)?;
            // Best effort: a smaller buffer only means more datagrams sent again.
            let udp = quinn::udp::UdpSocketState::new((&socket).into())?;
            if let Err(e) = udp.set_recv_buffer_size((&socket).into(), SOCKET_RECEIVE_BUFFER) {
                tracing::debug!("cannot enlarge the UDP receive buffer: {e}");
            }
            quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                Some(server_config),
                socket,
                Arc::new(quinn::TokioRuntime),
            )
        };
        let endpoint = bind(addr).map_err(|source| NetError::Bind { addr, source })?;
        Ok(Endpoint { endpoint, identity })
    }

    /// The address the socket is bound to (with the real port if 0 was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.endpoint.local_addr().map_err(NetError::LocalAddr)
    }

    /// Connects to `addr` and authenticates whichever device answers; the caller decides
    /// whether [`PeerConnection::peer`] is welcome.
    pub async fn connect(&self, addr: SocketAddr) -> Result<PeerConnection, NetError> {
        self.connect_inner(addr, None).await
    }

    /// Connects to `addr` and accepts only the device `expected`: any other device fails the
    /// handshake with [`NetError::UnexpectedPeer`].
    pub async fn connect_to(
        &self,
        addr: SocketAddr,
        expected: DeviceId,
    ) -> Result<PeerConnection, NetError> {
        self.connect_inner(addr, Some(expected)).await
    }

    async fn connect_inner(
        &self,
        addr: SocketAddr,
        expected: Option<DeviceId>,
    ) -> Result<PeerConnection, NetError> {
        let mismatch = Arc::new(OnceLock::new());
        let client_config = self.identity.client_config(expected, mismatch.clone())?;
        let connecting = self
            .endpoint
            .connect_with(client_config, addr, SERVER_NAME)
            .map_err(|source| NetError::Connect { addr, source })?;
        let after = self.identity.connect_timeout;
        let connection = match tokio::time::timeout(after, connecting).await {
            Err(_) => return Err(NetError::Timeout { addr, after }),
            Ok(Err(source)) => {
                return Err(match (expected, mismatch.get()) {
                    (Some(expected), Some(&actual)) => NetError::UnexpectedPeer {
                        addr,
                        expected: Box::new(expected),
                        actual: Box::new(actual),
                    },
                    _ => NetError::Handshake { addr, source },
                });
            }
            Ok(Ok(connection)) => connection,
        };
        let peer = authenticated_peer(&connection, addr)?;
        if let Some(expected) = expected
            && peer != expected
        {
            // The verifier already refuses this; checked again on what the handshake kept.
            connection.close(VarInt::from_u32(CLOSE_BAD_PEER), b"unexpected device");
            return Err(NetError::UnexpectedPeer {
                addr,
                expected: Box::new(expected),
                actual: Box::new(peer),
            });
        }
        tracing::debug!(%addr, %peer, "connected");
        Ok(PeerConnection {
            connection,
            peer,
            peer_listens: true,
        })
    }

    /// Waits for the next incoming connection and completes its handshake (bounded by
    /// [`NetConfig::connect_timeout`]). Handshakes are completed one at a time: a peer that
    /// stalls its handshake delays the next `accept` by at most that timeout.
    ///
    /// Returns `Some(Err(_))` for a connection that failed its handshake (call again for the
    /// next one) and `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<Result<PeerConnection, NetError>> {
        let incoming = self.endpoint.accept().await?;
        let addr = incoming.remote_address();
        let result = self.finish_accept(incoming, addr).await;
        match &result {
            Ok(conn) => tracing::debug!(%addr, peer = %conn.peer, "accepted"),
            Err(error) => tracing::debug!(%addr, %error, "refused incoming connection"),
        }
        Some(result)
    }

    /// Waits for the next incoming connection and hands it over before its handshake, so
    /// that the caller can complete several handshakes at once ([`Accepting::finish`]): a
    /// peer that stalls its handshake (or dies in the middle of it) then holds up no one.
    /// `None` once the endpoint is closed.
    pub async fn accept_incoming(&self) -> Option<Accepting> {
        let incoming = self.endpoint.accept().await?;
        Some(Accepting {
            addr: incoming.remote_address(),
            incoming,
            timeout: self.identity.connect_timeout,
        })
    }

    async fn finish_accept(
        &self,
        incoming: quinn::Incoming,
        addr: SocketAddr,
    ) -> Result<PeerConnection, NetError> {
        finish_handshake(incoming, addr, self.identity.connect_timeout).await
    }
}

/// An incoming connection whose handshake is still to be completed
/// ([`Endpoint::accept_incoming`]).
pub struct Accepting {
    incoming: quinn::Incoming,
    addr: SocketAddr,
    timeout: Duration,
}

impl Accepting {
    /// Where the connection comes from (not yet authenticated).
    pub fn remote_address(&self) -> SocketAddr {
        self.addr
    }

    /// Completes the handshake, bounded by [`NetConfig::connect_timeout`].
    pub async fn finish(self) -> Result<PeerConnection, NetError> {
        let result = finish_handshake(self.incoming, self.addr, self.timeout).await;
        match &result {
            Ok(conn) => tracing::debug!(addr = %self.addr, peer = %conn.peer, "accepted"),
            Err(error) => tracing::debug!(addr = %self.addr, %error, "refused incoming connection"),
        }
        result
    }

    /// Turns the connection away without a handshake.
    pub fn refuse(self) {
        self.incoming.refuse();
    }
}

async fn finish_handshake(
    incoming: quinn::Incoming,
    addr: SocketAddr,
    after: Duration,
) -> Result<PeerConnection, NetError> {
    let connecting = incoming
        .accept()
        .map_err(|source| NetError::Handshake { addr, source })?;
    let connection = tokio::time::timeout(after, connecting)
        .await
        .map_err(|_| NetError::Timeout { addr, after })?
        .map_err(|source| NetError::Handshake { addr, source })?;
    let peer = authenticated_peer(&connection, addr)?;
    let peer_listens = connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN_LISTENING);
    Ok(PeerConnection {
        connection,
        peer,
        peer_listens,
    })
}

impl Endpoint {
    /// Closes every connection with code 0, refuses new ones, ends pending and future
    /// [`Endpoint::accept`] calls with `None`, and waits (at most 2 s) for peers to be told.
    pub async fn close(&self) {
        self.close_within(CLOSE_WAIT).await;
    }

    /// Like [`Endpoint::close`], waiting at most `wait` for the peers' acknowledgement. A
    /// one-shot sync, whose peer has already read everything, only needs its close frame
    /// sent: it does not wait out QUIC's draining period.
    pub async fn close_within(&self, wait: Duration) {
        self.endpoint.close(VarInt::from_u32(CLOSE_NORMAL), b"");
        if wait.is_zero() {
            // A zero timeout would still wait for the async timer's next tick (1 ms).
            return;
        }
        // Bounded: a peer that vanished would otherwise hold us until its idle timeout.
        let _ = tokio::time::timeout(wait, self.endpoint.wait_idle()).await;
    }
}

/// Reads the peer's device id from the certificate the handshake kept. On failure, closes
/// the connection.
fn authenticated_peer(
    connection: &quinn::Connection,
    addr: SocketAddr,
) -> Result<DeviceId, NetError> {
    let result = connection
        .peer_identity()
        .ok_or("the peer presented no certificate")
        .and_then(|identity| {
            identity
                .downcast::<Vec<CertificateDer<'static>>>()
                .map_err(|_| "the peer identity is not a certificate chain")
        })
        .and_then(|chain| match chain.as_slice() {
            [cert] => device_id_from_certificate(cert).map_err(CertProblem::describe),
            _ => Err("the peer did not present exactly one certificate"),
        });
    result.map_err(|reason| {
        connection.close(VarInt::from_u32(CLOSE_BAD_PEER), b"bad device identity");
        NetError::PeerIdentity { addr, reason }
    })
}

/// Writes one frame: the payload's length as a big-endian `u32`, then the payload.
pub async fn write_frame(send: &mut quinn::SendStream, payload: &[u8]) -> Result<(), NetError> {
    let prefix = frame::length_prefix(payload.len())
        .map_err(|PayloadTooLarge { len }| NetError::PayloadTooLarge { len })?;
    send.write_all(&prefix).await.map_err(NetError::Write)?;
    send.write_all(payload).await.map_err(NetError::Write)
}

/// Reads one frame written by [`write_frame`].
///
/// Returns `Ok(None)` when the stream finishes cleanly between frames. A length above
/// `max_len` is refused with [`NetError::FrameTooLarge`] before anything is allocated; a
/// stream that finishes inside a frame gives [`NetError::TruncatedFrame`].
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    max_len: usize,
) -> Result<Option<Vec<u8>>, NetError> {
    // Never more than the frame in progress needs: the next frame stays on the stream.
    let mut decoder = FrameDecoder::new(max_len);
    loop {
        match recv
            .read_chunk(decoder.needed(), true)
            .await
            .map_err(NetError::Read)?
        {
            Some(chunk) => decoder.handle_bytes(&chunk.bytes),
            None => decoder.handle_end(),
        }
        match decoder.poll_frame() {
            Ok(Some(payload)) => return Ok(Some(payload)),
            Ok(None) if decoder.is_finished() => return Ok(None),
            Ok(None) => {}
            Err(FrameError::TooLarge { len, max }) => {
                return Err(NetError::FrameTooLarge { len, max });
            }
            Err(FrameError::Truncated { received }) => {
                return Err(NetError::TruncatedFrame { received });
            }
        }
    }
}

/// The transport settings, identical for connections made and accepted.
fn transport_config(config: &NetConfig) -> Result<TransportConfig, NetError> {
    if config.max_streams_per_connection == 0 {
        return Err(NetError::InvalidConfig(
            "max_streams_per_connection must be at least 1",
        ));
    }
    if config.connect_timeout.is_zero() {
        return Err(NetError::InvalidConfig("connect_timeout must not be zero"));
    }
    if config.keep_alive.is_zero() || config.keep_alive >= config.idle_timeout {
        return Err(NetError::InvalidConfig(
            "keep_alive must be above zero and below idle_timeout",
        ));
    }
    let idle = IdleTimeout::try_from(config.idle_timeout)
        .map_err(|_| NetError::InvalidConfig("idle_timeout is too long"))?;
    let mut transport = TransportConfig::default();
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(config.keep_alive))
        .max_concurrent_bidi_streams(VarInt::from_u32(config.max_streams_per_connection))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .send_window(SEND_WINDOW)
        .datagram_receive_buffer_size(None)
        // No path-MTU probing: syncs are short, and probes of up to ~1.4 KB each would
        // cost more bytes than a quiet sync moves.
        .mtu_discovery_config(None);
    Ok(transport)
}

/// The device key as PKCS#8 v1 DER (RFC 8410: the private key is the 32-byte seed, as an
/// OCTET STRING inside the PKCS#8 OCTET STRING), encoded with the `pkcs8` types that
/// ed25519-dalek re-exports.
fn pkcs8_der(key: &DeviceKey) -> Result<PrivatePkcs8KeyDer<'static>, NetError> {
    let seed = key.seed();
    let mut inner = [0u8; 34];
    let inner = OctetStringRef::new(&seed)
        .and_then(|octets| octets.encode_to_slice(&mut inner))
        .map_err(NetError::KeyEncoding)?;
    let info = PrivateKeyInfoRef::new(
        ALGORITHM_ID,
        OctetStringRef::new(inner).map_err(NetError::KeyEncoding)?,
    );
    let mut out = [0u8; 48];
    let der = info
        .encode_to_slice(&mut out)
        .map_err(NetError::KeyEncoding)?;
    Ok(PrivatePkcs8KeyDer::from(der.to_vec()))
}

/// Makes this device's self-signed certificate from its own ed25519 key, and the key as
/// PKCS#8 DER for rustls.
fn device_certificate(
    key: &DeviceKey,
) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>), NetError> {
    let pkcs8 = pkcs8_der(key)?;
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(NetError::Certificate)?;
    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
        .map_err(NetError::Certificate)?;
    // For people reading the certificate; nothing checks it.
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, key.device_id().to_string());
    let cert = params
        .self_signed(&key_pair)
        .map_err(NetError::Certificate)?;
    Ok((cert.der().clone(), pkcs8))
}

impl LocalIdentity {
    fn server_config(&self) -> Result<quinn::ServerConfig, NetError> {
        let verifier = Arc::new(DeviceVerifier::new(&self.provider, None, None));
        let mut tls = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(NetError::Tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .map_err(NetError::Tls)?;
        // The server's order decides: a dialer that offers both says it listens.
        tls.alpn_protocols = vec![ALPN_LISTENING.to_vec(), ALPN.to_vec()];
        // No 0-RTT, no resumption: every connection signs a fresh handshake.
        tls.max_early_data_size = 0;
        tls.send_tls13_tickets = 0;
        tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        let quic = QuicServerConfig::try_from(tls).map_err(NetError::QuicTls)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
        server.transport_config(self.transport.clone());
        Ok(server)
    }

    /// A client configuration for one connection. With `expected`, any other device is
    /// refused and its id is left in `mismatch`.
    fn client_config(
        &self,
        expected: Option<DeviceId>,
        mismatch: Arc<OnceLock<DeviceId>>,
    ) -> Result<quinn::ClientConfig, NetError> {
        let verifier = Arc::new(DeviceVerifier::new(
            &self.provider,
            expected,
            Some(mismatch),
        ));
        let mut tls = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(NetError::Tls)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .map_err(NetError::Tls)?;
        tls.alpn_protocols = if self.listening {
            vec![ALPN_LISTENING.to_vec(), ALPN.to_vec()]
        } else {
            vec![ALPN.to_vec()]
        };
        tls.enable_early_data = false;
        tls.resumption = rustls::client::Resumption::disabled();
        let quic = QuicClientConfig::try_from(tls).map_err(NetError::QuicTls)?;
        let mut client = quinn::ClientConfig::new(Arc::new(quic));
        client.transport_config(self.transport.clone());
        Ok(client)
    }
}

/// Why a peer's certificate is not a device certificate. (`Debug` prints the description:
/// rustls shows it that way in handshake errors.)
#[derive(Clone, Copy)]
enum CertProblem {
    Malformed,
    NotEd25519,
    InvalidKey,
    Chain,
    Unexpected,
}

impl CertProblem {
    fn describe(self) -> &'static str {
        match self {
            CertProblem::Malformed => "the certificate cannot be parsed",
            CertProblem::NotEd25519 => "the certificate's key is not an Ed25519 key",
            CertProblem::InvalidKey => "the certificate's key is not a valid device id",
            CertProblem::Chain => "expected exactly one certificate, got a chain",
            CertProblem::Unexpected => "the certificate belongs to an unexpected device",
        }
    }

    fn into_tls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            self,
        ))))
    }
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl fmt::Debug for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl std::error::Error for CertProblem {}

/// The device id a certificate's SubjectPublicKeyInfo carries, if it is an Ed25519 key that
/// is a valid [`DeviceId`]. Nothing else in the certificate counts.
fn device_id_from_certificate(cert: &CertificateDer<'_>) -> Result<DeviceId, CertProblem> {
    let parsed = ParsedCertificate::try_from(cert).map_err(|_| CertProblem::Malformed)?;
    let spki = parsed.subject_public_key_info();
    let key =
        VerifyingKey::from_public_key_der(spki.as_ref()).map_err(|_| CertProblem::NotEd25519)?;
    DeviceId::from_bytes(key.to_bytes()).map_err(|_| CertProblem::InvalidKey)
}

/// Verifies the peer's certificate and handshake signature, on both sides.
#[derive(Debug)]
struct DeviceVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    /// Only this device is accepted (client side of [`Endpoint::connect_to`]).
    expected: Option<DeviceId>,
    /// Where the id of an unexpected device is left for the error message.
    mismatch: Option<Arc<OnceLock<DeviceId>>>,
}

impl DeviceVerifier {
    fn new(
        provider: &CryptoProvider,
        expected: Option<DeviceId>,
        mismatch: Option<Arc<OnceLock<DeviceId>>>,
    ) -> Self {
        DeviceVerifier {
            algorithms: provider.signature_verification_algorithms,
            expected,
            mismatch,
        }
    }

    fn verify_certificate(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<DeviceId, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(CertProblem::Chain.into_tls());
        }
        let device = device_id_from_certificate(end_entity).map_err(CertProblem::into_tls)?;
        if let Some(expected) = self.expected
            && device != expected
        {
            if let Some(mismatch) = &self.mismatch {
                let _ = mismatch.set(device);
            }
            return Err(CertProblem::Unexpected.into_tls());
        }
        Ok(device)
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
        }
        // The key must still be a device key (rustls checked the certificate first, but this
        // costs nothing).
        device_id_from_certificate(cert).map_err(CertProblem::into_tls)?;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for DeviceVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify_certificate(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::PeerIncompatible::Tls13RequiredForQuic.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for DeviceVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify_certificate(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::PeerIncompatible::Tls13RequiredForQuic.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}
