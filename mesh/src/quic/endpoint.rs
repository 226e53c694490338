//! The endpoint (one UDP socket, server and client), the hello exchange
//! that turns a QUIC connection into an authenticated [`PeerConn`], and the
//! per-connection message reader.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meshota_manifest::{KeyId, PublicKey, SecretKey};
use quinn::Connection;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use super::frame::{self, MAX_MESSAGE_BYTES};
use super::hello::{EXPORTER_LABEL, EXPORTER_LEN, Hello, MAX_HELLO_BYTES};
use super::tls::{self, ALPN, SERVER_NAME};
use super::{CloseCode, QuicError};

/// The whole hello exchange (both hellos and both verdicts) must finish
/// within this time after the QUIC handshake, or the connection is closed
/// with [`CloseCode::HelloTimeout`].
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Incoming connections whose handshake and hello are in progress at once;
/// further connection attempts are refused until one finishes.
pub const MAX_PENDING_HANDSHAKES: usize = 64;

/// Bytes of message bodies one connection may be assembling at once
/// (shared by its streams): with [`tls::MAX_CONCURRENT_UNI_STREAMS`]
/// streams of up to [`MAX_MESSAGE_BYTES`] each, this, not the stream count,
/// bounds what a peer can make us buffer.
pub const READ_BUDGET_BYTES: usize = 16 * 1024 * 1024;

/// Authenticated connections waiting for [`QuicEndpoint::accept`]; the
/// acceptor stops taking new connections while this many are queued.
const ACCEPT_QUEUE: usize = 16;

/// Received messages buffered per connection before the reader stops
/// reading (backpressure to the peer through QUIC flow control).
const MESSAGE_QUEUE: usize = 8;

/// The one-byte verdict frame a side sends after verifying and admitting
/// the other's hello.
const VERDICT_ADMITTED: u8 = 1;

/// A check of a peer's credentials against the key it proved: `Ok` admits,
/// `Err(reason)` refuses. The driver supplies it (the node checks a device
/// certificate chain against the fleet's root and revocation list), so
/// this crate stays free of X.509.
#[derive(Clone)]
pub struct PeerCheck(Arc<CheckFn>);

/// The function behind a [`PeerCheck`]: (proven key, credentials) → verdict.
type CheckFn = dyn Fn(&PublicKey, &[u8]) -> Result<(), String> + Send + Sync;

impl PeerCheck {
    /// Wraps a check.
    pub fn new(
        check: impl Fn(&PublicKey, &[u8]) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(check))
    }
}

impl core::fmt::Debug for PeerCheck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PeerCheck(..)")
    }
}

impl PartialEq for PeerCheck {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PeerCheck {}

/// Which peers may connect, decided on the key each peer proved by
/// channel binding (and, for `Certified`, the credentials its hello
/// carries). Applies to both accepted and initiated connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Only these device key ids (the fleet allow-list).
    AllowList(BTreeSet<KeyId>),
    /// Anyone who proves some device key. For testnets only: it must be
    /// chosen explicitly, it is never a default.
    Open,
    /// Peers whose credentials pass the check (provisioned fleets: a
    /// device certificate chaining to the fleet root, not revoked, for the
    /// proven key).
    Certified(PeerCheck),
}

impl Admission {
    /// Whether `peer` is admitted on its key alone. `Open` admits every
    /// key; `AllowList` exactly the listed ones; `Certified` none (it needs
    /// the credentials: [`Admission::check`]).
    #[must_use]
    pub fn admits(&self, peer: &KeyId) -> bool {
        match self {
            Self::AllowList(keys) => keys.contains(peer),
            Self::Open => true,
            Self::Certified(_) => false,
        }
    }

    /// Whether the peer that proved `key` and presented `credentials` is
    /// admitted; `Err` gives the reason it is not.
    ///
    /// # Errors
    /// The refusal's reason.
    pub fn check(&self, key: &PublicKey, credentials: &[u8]) -> Result<(), String> {
        match self {
            Self::Certified(c) => (c.0)(key, credentials),
            other if other.admits(&key.id()) => Ok(()),
            _ => Err("not on the allow-list".into()),
        }
    }
}

/// What one endpoint proves and enforces on every connection.
struct Identity {
    key: SecretKey,
    hardware: String,
    admission: Admission,
    credentials: Vec<u8>,
}

/// A QUIC endpoint on one UDP socket that both accepts and initiates
/// connections. Every [`PeerConn`] it yields has passed channel binding and
/// admission. Must be created and used inside a tokio runtime.
pub struct QuicEndpoint {
    endpoint: quinn::Endpoint,
    identity: Arc<Identity>,
    accepted: tokio::sync::Mutex<mpsc::Receiver<Result<PeerConn, QuicError>>>,
    acceptor: JoinHandle<()>,
}

impl QuicEndpoint {
    /// Binds `addr` with a fresh self-signed TLS certificate and starts
    /// accepting connections in the background (handshakes run
    /// concurrently, at most [`MAX_PENDING_HANDSHAKES`]).
    ///
    /// # Errors
    /// [`QuicError::MalformedHello`] if `hardware` is longer than 128
    /// bytes; [`QuicError::Io`] if the socket cannot be bound; TLS
    /// configuration errors (see [`tls::server_config`]).
    pub fn bind(
        addr: SocketAddr,
        device_key: SecretKey,
        hardware: String,
        admission: Admission,
    ) -> Result<Self, QuicError> {
        Self::bind_with_credentials(addr, device_key, hardware, admission, Vec::new())
    }

    /// [`QuicEndpoint::bind`], presenting `credentials` (this node's
    /// certificate chain) in every hello, for fleets admitted by
    /// certificate.
    ///
    /// # Errors
    /// As [`QuicEndpoint::bind`]; [`QuicError::MalformedHello`] when the
    /// credentials exceed [`super::hello::MAX_CREDENTIAL_BYTES`].
    pub fn bind_with_credentials(
        addr: SocketAddr,
        device_key: SecretKey,
        hardware: String,
        admission: Admission,
        credentials: Vec<u8>,
    ) -> Result<Self, QuicError> {
        if credentials.len() > super::hello::MAX_CREDENTIAL_BYTES {
            return Err(QuicError::MalformedHello {
                reason: "credentials too long",
            });
        }
        if hardware.len() > super::hello::MAX_HARDWARE_BYTES {
            return Err(QuicError::MalformedHello {
                reason: "hardware class string too long",
            });
        }
        let mut endpoint = quinn::Endpoint::server(tls::server_config()?, addr)?;
        endpoint.set_default_client_config(tls::client_config()?);
        let identity = Arc::new(Identity {
            key: device_key,
            hardware,
            admission,
            credentials,
        });
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let acceptor = tokio::spawn(accept_loop(endpoint.clone(), identity.clone(), tx));
        Ok(Self {
            endpoint,
            identity,
            accepted: tokio::sync::Mutex::new(rx),
            acceptor,
        })
    }

    /// The bound socket address (with the real port when bound to port 0).
    ///
    /// # Errors
    /// [`QuicError::Io`] if the socket cannot report it.
    pub fn local_addr(&self) -> Result<SocketAddr, QuicError> {
        Ok(self.endpoint.local_addr()?)
    }

    /// This endpoint's device key id, as peers see it.
    #[must_use]
    pub fn device_id(&self) -> KeyId {
        self.identity.key.id()
    }

    /// Connects to `addr`, runs the hello exchange and admission. The
    /// returned connection's peer proved its key over this TLS session and
    /// is admitted; it has also admitted us.
    ///
    /// # Errors
    /// [`QuicError::ClosedByPeer`] with the peer's reason when it refused
    /// us; [`QuicError::ChannelBindingFailed`], [`QuicError::NotAdmitted`],
    /// [`QuicError::MalformedHello`] when we refused it (the connection is
    /// then closed with the matching [`CloseCode`]); transport errors.
    pub async fn connect(&self, addr: SocketAddr) -> Result<PeerConn, QuicError> {
        let connecting = self.endpoint.connect(addr, SERVER_NAME)?;
        let conn = connecting.await?;
        establish(conn, &self.identity).await
    }

    /// The next authenticated incoming connection, or `None` once the
    /// endpoint is closed. An `Err` reports one refused or failed incoming
    /// connection; later calls go on with the next. Cancel-safe.
    pub async fn accept(&self) -> Option<Result<PeerConn, QuicError>> {
        self.accepted.lock().await.recv().await
    }

    /// Closes every connection with [`CloseCode::Normal`] and stops
    /// accepting. Unsent data is discarded; see [`Self::wait_idle`].
    pub fn close(&self) {
        self.acceptor.abort();
        self.endpoint
            .close(CloseCode::Normal.varint(), b"endpoint closed");
    }

    /// Waits until every connection has finished closing (so close frames
    /// reached the peers).
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

impl Drop for QuicEndpoint {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl std::fmt::Debug for QuicEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicEndpoint")
            .field("device_id", &self.identity.key.id())
            .field("local_addr", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// Takes incoming connections and runs their handshakes concurrently,
/// queueing the results for [`QuicEndpoint::accept`].
async fn accept_loop(
    endpoint: quinn::Endpoint,
    identity: Arc<Identity>,
    tx: mpsc::Sender<Result<PeerConn, QuicError>>,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let identity = identity.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let result = match incoming.await {
                Ok(conn) => establish(conn, &identity).await,
                Err(e) => Err(e.into()),
            };
            drop(permit);
            // The receiver is gone only when the endpoint was dropped.
            let _ = tx.send(result).await;
        });
    }
}

/// Runs the hello exchange on a fresh connection, within
/// [`HELLO_TIMEOUT`]. On failure the connection is closed with the error's
/// [`CloseCode`] when it has one.
async fn establish(conn: Connection, identity: &Identity) -> Result<PeerConn, QuicError> {
    let result = match tokio::time::timeout(HELLO_TIMEOUT, hello_exchange(&conn, identity)).await {
        Ok(result) => result,
        Err(_) => Err(QuicError::HelloTimeout),
    };
    match result {
        Ok(hello) => Ok(PeerConn::new(conn, hello)),
        Err(e) => {
            if let Some(code) = e.close_code() {
                conn.close(code.varint(), e.to_string().as_bytes());
            }
            Err(e)
        }
    }
}

/// Each side, concurrently: opens a uni stream, sends its hello; reads the
/// peer's hello from the peer's first uni stream, verifies it against the
/// exporter value and checks admission; sends the verdict frame and
/// finishes; reads the peer's verdict and the end of its stream.
async fn hello_exchange(conn: &Connection, identity: &Identity) -> Result<Hello, QuicError> {
    let alpn = conn
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol);
    if alpn.as_deref() != Some(ALPN) {
        return Err(QuicError::WrongAlpn);
    }
    let mut exporter = [0u8; EXPORTER_LEN];
    conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
        .map_err(|_| QuicError::Exporter)?;
    let ours = Hello::sign(&identity.key, &exporter, &identity.hardware)?
        .with_credentials(identity.credentials.clone())?;

    let mut out = conn.open_uni().await?;
    frame::write_frame(&mut out, &ours.encode()?).await?;

    let mut inp = conn.accept_uni().await?;
    let theirs = Hello::decode(&frame::read_frame(&mut inp, MAX_HELLO_BYTES).await?)?;
    theirs.verify(&exporter)?;
    if theirs.device_key == *identity.key.public() {
        return Err(QuicError::ReflectedHello);
    }
    if let Err(reason) = identity
        .admission
        .check(&theirs.device_key, &theirs.credentials)
    {
        return Err(match identity.admission {
            Admission::Certified(_) => QuicError::NotCertified {
                peer: theirs.peer_id(),
                reason,
            },
            _ => QuicError::NotAdmitted {
                peer: theirs.peer_id(),
            },
        });
    }

    frame::write_frame(&mut out, &[VERDICT_ADMITTED]).await?;
    out.finish()?;
    let verdict = frame::read_frame(&mut inp, 1).await?;
    if verdict != [VERDICT_ADMITTED] {
        return Err(QuicError::MalformedFrame {
            reason: "unknown hello verdict",
        });
    }
    frame::expect_end(&mut inp).await?;
    Ok(theirs)
}

/// An authenticated connection to one peer: the peer proved `peer_key`
/// over this TLS session, is admitted by us and has admitted us.
///
/// Messages are whole byte strings of at most [`MAX_MESSAGE_BYTES`], each
/// on its own unidirectional stream. A background task reads them; a
/// malformed or oversize frame closes the connection and is reported once
/// by [`PeerConn::recv`]. Dropping the `PeerConn` closes the connection.
pub struct PeerConn {
    conn: Connection,
    peer_key: PublicKey,
    hardware: String,
    messages: mpsc::Receiver<Result<Bytes, QuicError>>,
    reader: JoinHandle<()>,
}

impl PeerConn {
    fn new(conn: Connection, hello: Hello) -> Self {
        let (tx, messages) = mpsc::channel(MESSAGE_QUEUE);
        let reader = tokio::spawn(read_loop(conn.clone(), tx));
        Self {
            conn,
            peer_key: hello.device_key,
            hardware: hello.hardware,
            messages,
            reader,
        }
    }

    /// The peer's device key id (`peer_key().id()`).
    #[must_use]
    pub const fn peer_id(&self) -> KeyId {
        self.peer_key.id()
    }

    /// The device key the peer proved by channel binding.
    #[must_use]
    pub const fn peer_key(&self) -> &PublicKey {
        &self.peer_key
    }

    /// The hardware class the peer declared in its hello (authenticated by
    /// the session, not by any release key: a claim of the peer's).
    #[must_use]
    pub fn hardware(&self) -> &str {
        &self.hardware
    }

    /// The peer's current UDP address (may change by migration).
    #[must_use]
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// The underlying quinn connection, for statistics (`stats`, `rtt`)
    /// and handshake data. Opening streams on it breaks the message
    /// framing: the peer would refuse them.
    #[must_use]
    pub const fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Sends one message on a new unidirectional stream. Returns once the
    /// message is queued in quinn; it is delivered unless the connection
    /// fails or is closed first.
    ///
    /// # Errors
    /// [`QuicError::MessageTooLarge`] (nothing sent) when longer than
    /// [`MAX_MESSAGE_BYTES`]; connection and stream errors.
    pub async fn send(&self, message: &[u8]) -> Result<(), QuicError> {
        send_message(&self.conn, message).await
    }

    /// A handle that sends on this connection from another task. Sending
    /// can wait for the peer's stream credit, which comes back only as the
    /// peer reads; a driver that sends and receives in one task can
    /// deadlock with a peer doing the same (each waiting to send, neither
    /// reading). Send from one task and [`Self::recv`] in another.
    #[must_use]
    pub fn sender(&self) -> PeerSender {
        PeerSender {
            conn: self.conn.clone(),
        }
    }

    /// The next message. `Ok(None)` once the connection ended in an
    /// orderly close (by either side); `Err` once if it failed (bad frame,
    /// transport error, closed by the peer with an error code), then
    /// `Ok(None)`. Messages on different streams may arrive in a different
    /// order than sent. Cancel-safe.
    ///
    /// # Errors
    /// [`QuicError::FrameTooLarge`] / [`QuicError::MalformedFrame`] for a
    /// peer's bad frame (we closed the connection); [`QuicError::ClosedByPeer`]
    /// and transport errors.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, QuicError> {
        self.messages.recv().await.transpose()
    }

    /// Closes the connection with [`CloseCode::Normal`] and `reason`.
    /// Unsent and unread data is discarded.
    pub fn close(&self, reason: &str) {
        self.conn
            .close(CloseCode::Normal.varint(), reason.as_bytes());
    }

    /// Waits until the connection is closed by either side, and returns why.
    pub async fn closed(&self) -> QuicError {
        self.conn.closed().await.into()
    }
}

/// Sends messages on a [`PeerConn`]'s connection (see [`PeerConn::sender`]).
#[derive(Clone)]
pub struct PeerSender {
    conn: Connection,
}

impl PeerSender {
    /// As [`PeerConn::send`].
    ///
    /// # Errors
    /// As [`PeerConn::send`].
    pub async fn send(&self, message: &[u8]) -> Result<(), QuicError> {
        send_message(&self.conn, message).await
    }

    /// As [`PeerConn::close`].
    pub fn close(&self, reason: &str) {
        self.conn
            .close(CloseCode::Normal.varint(), reason.as_bytes());
    }
}

impl std::fmt::Debug for PeerSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSender")
            .field("remote_addr", &self.conn.remote_address())
            .finish_non_exhaustive()
    }
}

async fn send_message(conn: &Connection, message: &[u8]) -> Result<(), QuicError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(QuicError::MessageTooLarge {
            len: message.len() as u64,
            max: MAX_MESSAGE_BYTES as u64,
        });
    }
    let mut stream = conn.open_uni().await?;
    frame::write_frame(&mut stream, message).await?;
    stream.finish()?;
    Ok(())
}

impl Drop for PeerConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl std::fmt::Debug for PeerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConn")
            .field("peer_id", &self.peer_key.id())
            .field("hardware", &self.hardware)
            .field("remote_addr", &self.conn.remote_address())
            .finish_non_exhaustive()
    }
}

/// Accepts the peer's message streams and reads them concurrently (at most
/// `MAX_CONCURRENT_UNI_STREAMS`, enforced by QUIC), queueing each whole
/// message. Message bodies being assembled share [`READ_BUDGET_BYTES`]: a
/// stream whose announced length does not fit waits (and QUIC flow control
/// stops its sender) until earlier messages are handed on. Stops at the
/// first failure, closing the connection when the peer broke the framing.
async fn read_loop(conn: Connection, tx: mpsc::Sender<Result<Bytes, QuicError>>) {
    let budget = Arc::new(Semaphore::new(READ_BUDGET_BYTES / 1024));
    let mut reads = JoinSet::new();
    let failure = loop {
        tokio::select! {
            accepted = conn.accept_uni() => match accepted {
                Ok(mut stream) => {
                    let budget = budget.clone();
                    reads.spawn(async move { frame::read_message(&mut stream, budget).await });
                }
                Err(e) => break QuicError::from(e),
            },
            Some(done) = reads.join_next() => match done {
                Ok(Ok((message, permit))) => {
                    if tx.send(Ok(Bytes::from(message))).await.is_err() {
                        return; // the PeerConn is gone
                    }
                    drop(permit);
                }
                Ok(Err(e)) => break e,
                Err(_) => break QuicError::Stream { reason: "message reader task failed".into() },
            },
        }
    };
    if let Some(code) = failure.close_code() {
        conn.close(code.varint(), failure.to_string().as_bytes());
    }
    if !failure.is_orderly_close() {
        let _ = tx.send(Err(failure)).await;
    }
}
