//! The prober answers the server's authentication requests itself, below tokio-postgres.
//!
//! [`Authenticate`] is a stream layer just under tokio-postgres (around the raw socket for a
//! plaintext connection, above TLS for an encrypted one). From the startup message to the
//! server's `AuthenticationOk` it reads whole backend messages: an authentication request
//! (SCRAM-SHA-256 with or without channel binding, cleartext, md5) is answered here and never
//! reaches tokio-postgres, which then sees the `AuthenticationOk` as if the server trusted it and
//! goes on as usual; every other message (an `ErrorResponse`, a notice) is passed up unchanged,
//! so server errors still come back as tokio-postgres's own errors with their SQLSTATE. After
//! `AuthenticationOk` (or an error) the layer steps aside. tokio-postgres is given no password
//! at all.
//!
//! Why not let tokio-postgres authenticate: its SCRAM runs PBKDF2 with the HMAC key set up anew
//! at every one of the server's iterations (four SHA-256 compressions per iteration instead of
//! two), so SCRAM dominated a test's CPU on the client; and it runs all of them inline, however
//! many the server asks for, so a hostile server sending `i=2000000000` would hold a runtime
//! thread for minutes, out of reach of any deadline. Here PBKDF2 is RustCrypto's `pbkdf2` (the
//! HMAC key set up once, half the compressions) and a server asking for more than
//! [`MAX_SCRAM_ITERATIONS`] is refused. Keys a server verified are kept for its next login ([`super::scram_cache`]), so a
//! monitored target costs PBKDF2 once an hour rather than at every check.
//!
//! The rules are libpq's (SECURITY.md S13): with `channel_binding=require` only
//! SCRAM-SHA-256-PLUS over TLS is accepted (a cleartext, md5 or plain SCRAM request, or an
//! `AuthenticationOk` without it, ends the attempt and nothing is sent); `prefer` uses PLUS when
//! the server offers it over TLS; a cleartext or md5 password is sent over an unencrypted stream
//! only when the layer is told it may (`disable`/`allow` with the admin's permission). The
//! inspector's guard below still refuses such a password message on its own, as a second line.
//!
//! The early query: when the settings carry one (the prober's probe query; pools have none), it
//! is written in the same write as the client's last answer (SCRAM's client-final or the password
//! message), so the server reads it as soon as its start-up is done instead of a round trip
//! after its `ReadyForQuery`. It only reads and holds no secret; a server that refuses the login
//! never runs it (the refusal comes first and goes up as before, so the failure stays the
//! start-up's or the authentication's), and nothing is sent before the checks above passed.
//! tokio-postgres knows nothing of it: after `AuthenticationOk` the layer passes up the messages
//! to the end of the first `ReadyForQuery`, holds what follows (the query's answer) until
//! tokio-postgres writes that same query itself, takes those bytes as written instead of sending
//! them again, and only then steps aside.

use std::io;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zeroize::Zeroizing;

use super::inspect::{BackendHeader, SSL_REQUEST_CODE, SharedTrace, be_u32, lock};
use super::scram_cache::{ScramCache, ScramKeys, Tag};
use crate::model::ChannelBinding;
use crate::secret::Password;

/// The most PBKDF2 iterations a server may ask for (PostgreSQL's default is 4,096, about 25
/// times fewer); a server asking for more is refused rather than given a thread to spin.
pub(crate) const MAX_SCRAM_ITERATIONS: u32 = 100_000;

/// The largest backend message read whole before authentication is over. Requests and errors
/// are far smaller; a peer sending more is not answered.
const MAX_AUTH_MESSAGE: usize = 64 * 1024;

const SCRAM: &str = "SCRAM-SHA-256";
const SCRAM_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// What authenticating needs, shared by both layers of an attempt.
#[derive(Debug)]
pub(crate) struct AuthSettings {
    /// The user name (md5 mixes it into the hash).
    pub(crate) user: String,
    pub(crate) password: Password,
    pub(crate) channel_binding: ChannelBinding,
    /// Where SCRAM keys a server verified are kept for the next login ([`ScramCache::shared`]
    /// outside tests).
    pub(crate) keys: &'static ScramCache,
    /// A simple `Query` message to send right behind the client's last authentication answer
    /// (the SCRAM client-final or the password message), without waiting for the server's
    /// `ReadyForQuery` (see [`Authenticate`]): the prober's probe query; none for pools.
    pub(crate) early_query: Option<Vec<u8>>,
}

/// Why the client stopped authenticating. Nothing derived from the password was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A cleartext or md5 password was asked for over an unencrypted stream that may not carry
    /// one.
    PlainPassword,
    /// Channel binding is required, and the server asked for (or ended with) something else.
    ChannelBindingRequired,
    /// No authentication method this client implements was offered.
    Unsupported,
    /// More PBKDF2 iterations than [`MAX_SCRAM_ITERATIONS`].
    TooManyIterations,
    /// The server's final SCRAM message did not prove it knows the password.
    ServerProof,
    /// The server's authentication messages do not follow the protocol.
    Malformed,
}

impl Refusal {
    fn error(self) -> io::Error {
        let text = match self {
            Self::PlainPassword => {
                "refused to send a password in cleartext over an unencrypted connection"
            }
            Self::ChannelBindingRequired => "channel binding is required but was not offered",
            Self::Unsupported => "no supported authentication method was offered",
            Self::TooManyIterations => "the server asked for too many SCRAM iterations",
            Self::ServerProof => "the server's SCRAM signature did not verify",
            Self::Malformed => "the server's authentication messages are malformed",
        };
        io::Error::new(io::ErrorKind::PermissionDenied, text)
    }
}

/// One stream's side of authentication: the settings, what the stream is, and SCRAM's state.
#[derive(Debug)]
struct Authenticator {
    settings: Arc<AuthSettings>,
    /// The `tls-server-end-point` hash of the server certificate, on an encrypted stream.
    binding: Option<Vec<u8>>,
    encrypted: bool,
    /// Whether a cleartext or md5 password may be sent on this stream.
    plain_allowed: bool,
    scram: Option<Scram>,
    /// Whether the server's final SCRAM signature verified.
    verified: bool,
}

/// A SCRAM exchange in progress.
struct Scram {
    plus: bool,
    /// The `c=` attribute: base64 of the GS2 header and the channel-binding data.
    channel: String,
    client_nonce: String,
    client_first_bare: String,
    /// The server signature to expect, once the proof was sent.
    server_signature: Option<Zeroizing<Vec<u8>>>,
    /// Keys derived for this exchange, filed in the cache once the server's signature verifies.
    derived: Option<(Tag, ScramKeys)>,
}

impl std::fmt::Debug for Scram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scram")
            .field("plus", &self.plus)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// The answer to authentication request `code` with `body` (after the code): a message to
    /// send, or none.
    fn request(&mut self, code: u32, body: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, Refusal> {
        let require = self.settings.channel_binding == ChannelBinding::Require;
        match code {
            3 | 5 => {
                if require {
                    return Err(Refusal::ChannelBindingRequired);
                }
                if !self.plain_allowed {
                    return Err(Refusal::PlainPassword);
                }
                let password = self.settings.password.expose_secret().as_bytes();
                if code == 3 {
                    return Ok(Some(password_message(password)));
                }
                let salt: [u8; 4] = body
                    .get(..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(Refusal::Malformed)?;
                let hashed = Zeroizing::new(postgres_protocol::authentication::md5_hash(
                    self.settings.user.as_bytes(),
                    password,
                    salt,
                ));
                Ok(Some(password_message(hashed.as_bytes())))
            }
            10 => self.sasl_start(body).map(Some),
            11 => self.sasl_continue(body).map(Some),
            12 => self.sasl_final(body).map(|()| None),
            _ => Err(Refusal::Unsupported),
        }
    }

    /// Checks an `AuthenticationOk`: with channel binding required, only after SCRAM-PLUS; after
    /// a SCRAM start, only once the server proved it knows the password.
    fn finished(&self) -> Result<(), Refusal> {
        if self.settings.channel_binding == ChannelBinding::Require && !self.bound() {
            return Err(Refusal::ChannelBindingRequired);
        }
        if self.scram.is_some() && !self.verified {
            return Err(Refusal::ServerProof);
        }
        Ok(())
    }

    /// Whether SCRAM-SHA-256-PLUS finished with a verified server signature.
    fn bound(&self) -> bool {
        self.verified && self.scram.as_ref().is_some_and(|s| s.plus)
    }

    /// `AuthenticationSASL`: picks the mechanism and sends the client-first message.
    fn sasl_start(&mut self, body: &[u8]) -> Result<Zeroizing<Vec<u8>>, Refusal> {
        if self.scram.is_some() {
            return Err(Refusal::Malformed);
        }
        let (mut plus_offered, mut plain_offered) = (false, false);
        for mechanism in body.split(|b| *b == 0).take_while(|m| !m.is_empty()) {
            plus_offered |= mechanism == SCRAM_PLUS.as_bytes();
            plain_offered |= mechanism == SCRAM.as_bytes();
        }
        let binding = self.binding.as_ref().filter(|_| self.encrypted);
        let (mechanism, gs2, data): (&str, &str, &[u8]) = match self.settings.channel_binding {
            ChannelBinding::Require => match binding {
                Some(data) if plus_offered => (SCRAM_PLUS, "p=tls-server-end-point,,", data),
                _ => return Err(Refusal::ChannelBindingRequired),
            },
            ChannelBinding::Prefer => match binding {
                Some(data) if plus_offered => (SCRAM_PLUS, "p=tls-server-end-point,,", data),
                Some(_) if plain_offered => (SCRAM, "y,,", &[]),
                None if plain_offered => (SCRAM, "n,,", &[]),
                _ => return Err(Refusal::Unsupported),
            },
            ChannelBinding::Disable if plain_offered => (SCRAM, "n,,", &[]),
            ChannelBinding::Disable => return Err(Refusal::Unsupported),
        };
        let mut nonce = [0u8; 18];
        getrandom::fill(&mut nonce).map_err(|_| Refusal::Unsupported)?;
        let client_nonce = B64.encode(nonce);
        let client_first_bare = format!("n=,r={client_nonce}");
        let first = format!("{gs2}{client_first_bare}");
        let channel = B64.encode([gs2.as_bytes(), data].concat());
        self.scram = Some(Scram {
            plus: mechanism == SCRAM_PLUS,
            channel,
            client_nonce,
            client_first_bare,
            server_signature: None,
            derived: None,
        });
        let mut m = Vec::with_capacity(first.len() + mechanism.len() + 10);
        m.push(b'p');
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(mechanism.as_bytes());
        m.push(0);
        m.extend_from_slice(&len_i32(first.len())?.to_be_bytes());
        m.extend_from_slice(first.as_bytes());
        set_len(&mut m)?;
        Ok(Zeroizing::new(m))
    }

    /// `AuthenticationSASLContinue`: the server-first message; sends the proof.
    fn sasl_continue(&mut self, body: &[u8]) -> Result<Zeroizing<Vec<u8>>, Refusal> {
        let scram = self.scram.as_mut().ok_or(Refusal::Malformed)?;
        if scram.server_signature.is_some() {
            return Err(Refusal::Malformed);
        }
        let server_first = std::str::from_utf8(body).map_err(|_| Refusal::Malformed)?;
        let mut parts = server_first.split(',');
        let nonce = attribute(parts.next(), 'r')?;
        let salt = attribute(parts.next(), 's')?;
        let iterations = attribute(parts.next(), 'i')?;
        if !nonce.starts_with(&scram.client_nonce) || nonce.len() <= scram.client_nonce.len() {
            return Err(Refusal::Malformed);
        }
        let salt = B64.decode(salt).map_err(|_| Refusal::Malformed)?;
        let iterations: u32 = iterations.parse().map_err(|_| Refusal::Malformed)?;
        let iterations = NonZeroU32::new(iterations).ok_or(Refusal::Malformed)?;
        if iterations.get() > MAX_SCRAM_ITERATIONS {
            return Err(Refusal::TooManyIterations);
        }
        let password = normalize(self.settings.password.expose_secret());
        let cache = self.settings.keys;
        let tag = cache.tag(&password, &salt, iterations.get());
        let keys = match tag.as_ref().and_then(|tag| cache.get(tag)) {
            Some(keys) => keys,
            None => {
                let keys = derive_keys(&password, &salt, iterations)?;
                scram.derived = tag.map(|tag| (tag, keys.clone()));
                keys
            }
        };
        let (client_key, server_key) = (&keys.client, &keys.server);
        let stored_key = Sha256::digest(client_key.as_slice());
        let without_proof = format!("c={},r={nonce}", scram.channel);
        let auth_message = format!("{},{server_first},{without_proof}", scram.client_first_bare);
        let client_signature = hmac_sha256(&stored_key, auth_message.as_bytes())?;
        let proof: Zeroizing<Vec<u8>> = Zeroizing::new(
            client_key
                .iter()
                .zip(&client_signature)
                .map(|(k, s)| k ^ s)
                .collect(),
        );
        scram.server_signature = Some(Zeroizing::new(hmac_sha256(
            server_key.as_slice(),
            auth_message.as_bytes(),
        )?));
        let last = Zeroizing::new(format!(
            "{without_proof},p={}",
            B64.encode(proof.as_slice())
        ));
        let mut m = Vec::with_capacity(last.len() + 5);
        m.push(b'p');
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(last.as_bytes());
        set_len(&mut m)?;
        Ok(Zeroizing::new(m))
    }

    /// `AuthenticationSASLFinal`: checks the server's signature.
    fn sasl_final(&mut self, body: &[u8]) -> Result<(), Refusal> {
        let scram = self.scram.as_mut().ok_or(Refusal::Malformed)?;
        let expected = scram.server_signature.take().ok_or(Refusal::Malformed)?;
        let text = std::str::from_utf8(body).map_err(|_| Refusal::Malformed)?;
        let verifier = attribute(text.split(',').next(), 'v').map_err(|_| Refusal::ServerProof)?;
        let got = B64.decode(verifier).map_err(|_| Refusal::ServerProof)?;
        if !bool::from(got.as_slice().ct_eq(expected.as_slice())) {
            return Err(Refusal::ServerProof);
        }
        self.verified = true;
        // The server knows keys derived from this password: right for its next login too.
        if let Some((tag, keys)) = scram.derived.take() {
            self.settings.keys.put(tag, keys);
        }
        Ok(())
    }
}

/// SCRAM's `ClientKey` and `ServerKey` for `password` (normalized) under `salt`: PBKDF2, the
/// expensive part of SCRAM.
fn derive_keys(password: &[u8], salt: &[u8], iterations: NonZeroU32) -> Result<ScramKeys, Refusal> {
    let mut salted = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations.get(), salted.as_mut());
    let mut keys = ScramKeys {
        client: Zeroizing::new([0; 32]),
        server: Zeroizing::new([0; 32]),
    };
    for (out, name) in [
        (keys.client.as_mut(), &b"Client Key"[..]),
        (keys.server.as_mut(), &b"Server Key"[..]),
    ] {
        let mac = Zeroizing::new(hmac_sha256(salted.as_ref(), name)?);
        out.copy_from_slice(&mac);
    }
    Ok(keys)
}

/// HMAC-SHA-256 of `data` under `key` (HMAC takes a key of any length: it never fails).
fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<Vec<u8>, Refusal> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| Refusal::Malformed)?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// The value of `name=value`, when `part` is that attribute.
fn attribute(part: Option<&str>, name: char) -> Result<&str, Refusal> {
    part.and_then(|p| p.strip_prefix(name))
        .and_then(|p| p.strip_prefix('='))
        .ok_or(Refusal::Malformed)
}

/// The password as SCRAM hashes it: SASLprep'd, or as it is when that fails (as PostgreSQL).
fn normalize(password: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(match stringprep::saslprep(password) {
        Ok(prepared) => prepared.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    })
}

fn password_message(password: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut m = Zeroizing::new(Vec::with_capacity(password.len() + 6));
    m.push(b'p');
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(password);
    m.push(0);
    // A password is far below 2 GiB (the model bounds it).
    let len = u32::try_from(m.len() - 1).unwrap_or(u32::MAX);
    m[1..5].copy_from_slice(&len.to_be_bytes());
    m
}

fn len_i32(n: usize) -> Result<i32, Refusal> {
    i32::try_from(n).map_err(|_| Refusal::Malformed)
}

/// Writes a typed message's length (everything after the type byte).
fn set_len(m: &mut [u8]) -> Result<(), Refusal> {
    let len = u32::try_from(m.len() - 1).map_err(|_| Refusal::Malformed)?;
    m[1..5].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Where a stream is in the connection's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing written yet (or the server declined TLS): the next message tells.
    Start,
    /// An `SSLRequest` went out; its one-byte answer comes next.
    SslAnswer,
    /// The startup message went out: answering authentication requests.
    Auth,
    /// Authenticated after the early query went out: passing the server's messages up to the
    /// end of its first `ReadyForQuery`.
    Opening,
    /// The first `ReadyForQuery` went up: what follows (the early query's answer) is held until
    /// tokio-postgres has written that query itself.
    Held,
    /// Passing bytes through: TLS runs above, or authentication is over.
    Aside,
}

/// Backend framing across reads, to find where the first `ReadyForQuery` ends.
#[derive(Debug, Default)]
struct Framing {
    header: BackendHeader,
    /// Bytes of the current message's body still to come.
    left: usize,
    kind: u8,
}

/// What [`Framing::scan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// The first `ReadyForQuery` ends at this offset of the scanned bytes.
    Ready(usize),
    /// An error (the session ends) or a length that is not PostgreSQL's.
    Error,
    /// Neither yet: every scanned byte comes before the `ReadyForQuery`.
    More,
}

impl Framing {
    fn scan(&mut self, data: &[u8]) -> Scan {
        let mut i = 0;
        while i < data.len() {
            if self.left == 0 {
                let byte = data[i];
                i += 1;
                let Some((kind, len)) = self.header.push(byte) else {
                    continue;
                };
                self.kind = kind;
                if self.kind == b'E' || len < 4 {
                    return Scan::Error;
                }
                self.left = len - 4;
            } else {
                let take = self.left.min(data.len() - i);
                self.left -= take;
                i += take;
            }
            if self.left == 0 && self.header.is_empty() && self.kind == b'Z' {
                return Scan::Ready(i);
            }
        }
        Scan::More
    }
}

/// The stream layer that authenticates; see the module docs. Its `Debug` shows the phase only:
/// an answer being written may be a password message.
pub(crate) struct Authenticate<S> {
    inner: S,
    phase: Phase,
    auth: Authenticator,
    trace: SharedTrace,
    /// The first bytes written in [`Phase::Start`] (an `SSLRequest` is 8).
    head: [u8; 8],
    head_have: usize,
    /// Backend bytes read in [`Phase::Auth`] and not yet a whole message.
    incoming: Vec<u8>,
    /// Bytes for the caller, from `upward_at` on.
    upward: Vec<u8>,
    upward_at: usize,
    /// An answer being written to the server, from `outgoing_at` on.
    outgoing: Zeroizing<Vec<u8>>,
    outgoing_at: usize,
    /// The early query as it went out behind the last answer, and how much of it tokio-postgres
    /// has written since: those bytes are taken as written, not sent again.
    early: Vec<u8>,
    early_written: usize,
    /// The framing from `AuthenticationOk` to the first `ReadyForQuery` ([`Phase::Opening`]).
    opening: Framing,
    /// The task to wake once a held answer may go up.
    held_waker: Option<Waker>,
}

impl<S> std::fmt::Debug for Authenticate<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticate")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl<S> Authenticate<S> {
    /// Around the raw socket: `plain_allowed` lets a cleartext or md5 password out on it.
    pub(crate) fn raw(
        inner: S,
        settings: Arc<AuthSettings>,
        plain_allowed: bool,
        trace: SharedTrace,
    ) -> Self {
        Self::new(inner, settings, None, false, plain_allowed, trace)
    }

    /// Above TLS, with the server certificate's `tls-server-end-point` hash, if any.
    pub(crate) fn encrypted(
        inner: S,
        settings: Arc<AuthSettings>,
        binding: Option<Vec<u8>>,
        trace: SharedTrace,
    ) -> Self {
        Self::new(inner, settings, binding, true, true, trace)
    }

    fn new(
        inner: S,
        settings: Arc<AuthSettings>,
        binding: Option<Vec<u8>>,
        encrypted: bool,
        plain_allowed: bool,
        trace: SharedTrace,
    ) -> Self {
        Self {
            inner,
            phase: Phase::Start,
            auth: Authenticator {
                settings,
                binding,
                encrypted,
                plain_allowed,
                scram: None,
                verified: false,
            },
            trace,
            head: [0; 8],
            head_have: 0,
            incoming: Vec::new(),
            upward: Vec::new(),
            upward_at: 0,
            outgoing: Zeroizing::new(Vec::new()),
            outgoing_at: 0,
            early: Vec::new(),
            early_written: 0,
            opening: Framing::default(),
            held_waker: None,
        }
    }

    fn refuse(&mut self, refusal: Refusal) -> io::Error {
        lock(&self.trace).refusal = Some(refusal);
        self.phase = Phase::Aside;
        self.incoming.clear();
        refusal.error()
    }

    /// Handles the whole messages at the front of `incoming`; `Ok(true)` when one was handled.
    fn next_message(&mut self) -> io::Result<bool> {
        if self.incoming.len() < 5 {
            return Ok(false);
        }
        let kind = self.incoming[0];
        let len = be_u32(&self.incoming[1..5]) as usize;
        if !(4..=MAX_AUTH_MESSAGE).contains(&len) {
            return Err(self.refuse(Refusal::Malformed));
        }
        let end = len + 1;
        if self.incoming.len() < end {
            return Ok(false);
        }
        if kind != b'R' || len < 8 {
            // An error ends the start (everything after it is the caller's); a notice or a
            // protocol negotiation is passed up and authentication goes on.
            if kind == b'E' {
                self.hand_over();
            } else {
                self.upward.extend(self.incoming.drain(..end));
            }
            return Ok(true);
        }
        let code = be_u32(&self.incoming[5..9]);
        match code {
            0 => {
                if let Err(refusal) = self.auth.finished() {
                    return Err(self.refuse(refusal));
                }
                if self.early.is_empty() {
                    self.hand_over();
                } else {
                    self.upward.extend(self.incoming.drain(..end));
                    self.phase = Phase::Opening;
                    self.open();
                }
            }
            3 | 5 | 10 | 11 | 12 => {
                let answer = self.auth.request(code, &self.incoming[9..end]);
                self.incoming.drain(..end);
                match answer {
                    Ok(Some(mut message)) => {
                        // The password message and SCRAM's client-final are the client's last
                        // word: the early query may follow them at once.
                        if code != 10 {
                            self.send_early(&mut message);
                        }
                        self.outgoing = message;
                        self.outgoing_at = 0;
                    }
                    Ok(None) => {}
                    Err(refusal) => return Err(self.refuse(refusal)),
                }
            }
            // Kerberos, GSS, SSPI, …: tokio-postgres says it does not support them.
            _ => self.hand_over(),
        }
        Ok(true)
    }

    /// Appends the early query to the client's last authentication answer, once.
    fn send_early(&mut self, message: &mut Vec<u8>) {
        if let Some(query) = &self.auth.settings.early_query
            && self.early.is_empty()
        {
            message.extend_from_slice(query);
            self.early.clone_from(query);
        }
    }

    /// [`Phase::Opening`]: passes up the messages before the first `ReadyForQuery` and that
    /// one, and holds what follows.
    fn open(&mut self) {
        match self.opening.scan(&self.incoming) {
            Scan::Ready(end) => {
                self.upward.extend(self.incoming.drain(..end));
                self.phase = Phase::Held;
            }
            Scan::More => self.upward.append(&mut self.incoming),
            // The server ends the session (or is not PostgreSQL): the caller judges.
            Scan::Error => self.hand_over(),
        }
    }

    /// Gives everything read so far to the caller and steps aside.
    fn hand_over(&mut self) {
        self.upward.append(&mut self.incoming);
        self.phase = Phase::Aside;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Authenticate<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.upward_at < this.upward.len() {
                let n = buf.remaining().min(this.upward.len() - this.upward_at);
                buf.put_slice(&this.upward[this.upward_at..this.upward_at + n]);
                this.upward_at += n;
                if this.upward_at == this.upward.len() {
                    this.upward.clear();
                    this.upward_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            match this.phase {
                Phase::Start | Phase::Aside => return Pin::new(&mut this.inner).poll_read(cx, buf),
                Phase::SslAnswer => {
                    let before = buf.filled().len();
                    ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                    this.phase = match buf.filled().get(before) {
                        Some(b'N') => Phase::Start,
                        _ => Phase::Aside,
                    };
                    this.head_have = 0;
                    return Poll::Ready(Ok(()));
                }
                Phase::Held if this.early_written < this.early.len() => {
                    this.held_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Phase::Held => {
                    this.hand_over();
                    continue;
                }
                Phase::Opening | Phase::Auth => {}
            }
            if this.phase == Phase::Auth {
                // Our answer first, then the server's next message.
                while this.outgoing_at < this.outgoing.len() {
                    let n = ready!(
                        Pin::new(&mut this.inner)
                            .poll_write(cx, &this.outgoing[this.outgoing_at..])
                    )?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    this.outgoing_at += n;
                }
                if !this.outgoing.is_empty() {
                    ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
                    this.outgoing = Zeroizing::new(Vec::new());
                    this.outgoing_at = 0;
                }
                if this.next_message()? {
                    continue;
                }
            }
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The server closed: whatever came is the caller's to judge.
                this.hand_over();
                if this.upward.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.incoming.extend_from_slice(read.filled());
            if this.phase == Phase::Opening {
                this.open();
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Authenticate<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !data.is_empty() && this.early_written < this.early.len() {
            let rest = &this.early[this.early_written..];
            let n = rest.len().min(data.len());
            let already_sent = data[..n] == rest[..n];
            // Something else than the early query (a `Terminate` when the test ends before its
            // query) means its answer is no longer anyone's.
            this.early_written = if already_sent {
                this.early_written + n
            } else {
                this.early.len()
            };
            if this.early_written == this.early.len()
                && let Some(waker) = this.held_waker.take()
            {
                waker.wake();
            }
            if already_sent {
                return Poll::Ready(Ok(n));
            }
        }
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, data))?;
        if this.phase == Phase::Start {
            let take = written.min(8 - this.head_have);
            this.head[this.head_have..this.head_have + take].copy_from_slice(&data[..take]);
            this.head_have += take;
            if this.head_have == 8 {
                this.phase = if be_u32(&this.head[4..8]) == SSL_REQUEST_CODE {
                    Phase::SslAnswer
                } else {
                    Phase::Auth
                };
            }
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(channel_binding: ChannelBinding) -> Arc<AuthSettings> {
        Arc::new(AuthSettings {
            user: "user".into(),
            password: Password::from("pencil"),
            channel_binding,
            keys: Box::leak(Box::new(ScramCache::new(16, Duration::from_secs(60)))),
            early_query: None,
        })
    }

    fn authenticator(channel_binding: ChannelBinding, binding: Option<Vec<u8>>) -> Authenticator {
        Authenticator {
            settings: settings(channel_binding),
            encrypted: binding.is_some(),
            binding,
            plain_allowed: false,
            scram: None,
            verified: false,
        }
    }

    /// RFC 7677's SCRAM-SHA-256 example (user "user", password "pencil"), with its client nonce.
    #[test]
    fn scram_matches_rfc_7677() {
        let mut a = authenticator(ChannelBinding::Disable, None);
        let first = a.sasl_start(b"SCRAM-SHA-256\0\0").unwrap();
        assert!(first.windows(5).any(|w| w == b"n,,n="));
        // The RFC's client nonce and its "n=user" (PostgreSQL leaves the name empty).
        let scram = a.scram.as_mut().unwrap();
        scram.client_nonce = "rOprNGfwEbeRWgbNEkqO".into();
        scram.client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO".into();
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = a.sasl_continue(server_first.as_bytes()).unwrap();
        let expected = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(&last[5..], expected.as_bytes());
        a.sasl_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        a.finished().unwrap();
    }

    /// The RFC 7677 exchange with the client nonce set; returns the client-final message.
    fn rfc_7677_exchange(a: &mut Authenticator) -> Zeroizing<Vec<u8>> {
        a.sasl_start(b"SCRAM-SHA-256\0\0").unwrap();
        let scram = a.scram.as_mut().unwrap();
        scram.client_nonce = "rOprNGfwEbeRWgbNEkqO".into();
        scram.client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO".into();
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        a.sasl_continue(server_first.as_bytes()).unwrap()
    }

    const RFC_7677_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

    /// Keys are kept only once a server's signature verified them, and a login with kept keys
    /// sends exactly the proof PBKDF2 would have given.
    #[test]
    fn verified_scram_keys_are_kept_and_give_the_same_proof() {
        let settings = settings(ChannelBinding::Disable);
        let fresh = || Authenticator {
            settings: settings.clone(),
            encrypted: false,
            binding: None,
            plain_allowed: false,
            scram: None,
            verified: false,
        };
        // A server whose signature does not verify: nothing kept.
        let mut a = fresh();
        rfc_7677_exchange(&mut a);
        assert_eq!(
            a.sasl_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(Refusal::ServerProof)
        );
        assert_eq!(settings.keys.len(), 0);
        // The right server: kept after its final message.
        let mut a = fresh();
        assert_eq!(&rfc_7677_exchange(&mut a)[5..], RFC_7677_FINAL.as_bytes());
        assert_eq!(
            settings.keys.len(),
            0,
            "nothing kept before the server proved itself"
        );
        a.sasl_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert_eq!(settings.keys.len(), 1);
        // The next login uses the kept keys (nothing derived) and proves the same.
        let mut a = fresh();
        assert_eq!(&rfc_7677_exchange(&mut a)[5..], RFC_7677_FINAL.as_bytes());
        assert!(
            a.scram.as_ref().unwrap().derived.is_none(),
            "kept keys used"
        );
        a.sasl_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        a.finished().unwrap();
        assert_eq!(settings.keys.len(), 1);
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let mut a = authenticator(ChannelBinding::Prefer, None);
        a.sasl_start(b"SCRAM-SHA-256\0\0").unwrap();
        let nonce = a.scram.as_ref().unwrap().client_nonce.clone();
        let server_first = format!("r={nonce}xyz,s=c2FsdA==,i=4096");
        a.sasl_continue(server_first.as_bytes()).unwrap();
        assert_eq!(
            a.sasl_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(Refusal::ServerProof)
        );
    }

    #[test]
    fn hostile_server_first_messages_are_refused() {
        let cases: &[(&str, Refusal)] = &[
            ("r=other,s=c2FsdA==,i=4096", Refusal::Malformed),
            ("m=ext,r={n}x,s=c2FsdA==,i=4096", Refusal::Malformed),
            ("r={n}x,s=***,i=4096", Refusal::Malformed),
            ("r={n}x,s=c2FsdA==,i=0", Refusal::Malformed),
            ("r={n}x,s=c2FsdA==,i=2000000000", Refusal::TooManyIterations),
            ("r={n},s=c2FsdA==,i=4096", Refusal::Malformed),
        ];
        for (text, refusal) in cases {
            let mut a = authenticator(ChannelBinding::Prefer, None);
            a.sasl_start(b"SCRAM-SHA-256\0\0").unwrap();
            let nonce = a.scram.as_ref().unwrap().client_nonce.clone();
            let text = text.replace("{n}", &nonce);
            assert_eq!(
                a.sasl_continue(text.as_bytes()).map(|_| ()),
                Err(*refusal),
                "{text}"
            );
        }
    }

    #[test]
    fn channel_binding_rules() {
        let cb = Some(vec![7u8; 32]);
        // require: only PLUS over TLS.
        let mut a = authenticator(ChannelBinding::Require, cb.clone());
        assert_eq!(
            a.sasl_start(b"SCRAM-SHA-256\0\0").map(|_| ()),
            Err(Refusal::ChannelBindingRequired)
        );
        let mut a = authenticator(ChannelBinding::Require, None);
        assert_eq!(
            a.sasl_start(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")
                .map(|_| ()),
            Err(Refusal::ChannelBindingRequired)
        );
        for code in [3, 5] {
            let mut a = authenticator(ChannelBinding::Require, cb.clone());
            a.plain_allowed = true;
            assert_eq!(
                a.request(code, b"salt").map(|_| ()),
                Err(Refusal::ChannelBindingRequired)
            );
        }
        // …and an AuthenticationOk without it.
        let a = authenticator(ChannelBinding::Require, cb.clone());
        assert_eq!(a.finished(), Err(Refusal::ChannelBindingRequired));
        let mut a = authenticator(ChannelBinding::Require, cb.clone());
        let first = a
            .sasl_start(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")
            .unwrap();
        assert!(first.windows(24).any(|w| w == b"p=tls-server-end-point,,"));
        // prefer: PLUS when offered over TLS, "y" when not offered, "n" without TLS.
        let mut a = authenticator(ChannelBinding::Prefer, cb.clone());
        let first = a.sasl_start(b"SCRAM-SHA-256\0\0").unwrap();
        assert!(first.windows(5).any(|w| w == b"y,,n="));
        let mut a = authenticator(ChannelBinding::Prefer, None);
        let first = a
            .sasl_start(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")
            .unwrap();
        assert!(first.windows(5).any(|w| w == b"n,,n="));
        // Nothing known offered.
        let mut a = authenticator(ChannelBinding::Disable, None);
        assert_eq!(
            a.sasl_start(b"SCRAM-SHA-1\0\0").map(|_| ()),
            Err(Refusal::Unsupported)
        );
    }

    /// A cleartext answer being written never shows in `Debug` (S8).
    #[test]
    fn debug_shows_no_answer() {
        let trace = SharedTrace::default();
        let mut stream = Authenticate::raw((), settings(ChannelBinding::Disable), true, trace);
        stream.outgoing = password_message(b"canary-auth-debug-91");
        stream.incoming = b"canary-auth-debug-91".to_vec();
        let shown = format!("{stream:?} {:?}", stream.auth);
        assert!(!shown.contains("canary"), "{shown}");
    }

    use crate::probe::inspect::tests::typed;

    /// Writes a start-up through `stream`, asks for a cleartext password and checks that the
    /// server gets the password message followed by `then`.
    async fn cleartext_login(
        stream: &mut Authenticate<tokio::io::DuplexStream>,
        server: &mut tokio::io::DuplexStream,
        then: &[u8],
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let startup = [&[0, 0, 0, 9, 0, 3, 0, 0][..], b"\0"].concat();
        stream.write_all(&startup).await.unwrap();
        let mut got = vec![0u8; startup.len()];
        server.read_exact(&mut got).await.unwrap();
        server
            .write_all(&typed(b'R', &3u32.to_be_bytes()))
            .await
            .unwrap();
        // The layer answers under a read, which then waits for the server.
        assert_eq!(poll_once(stream, &mut [0u8; 64]), None);
        let sent = [typed(b'p', b"pencil\0"), then.to_vec()].concat();
        let mut got = vec![0u8; sent.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, sent, "the password message, then {then:?}");
    }

    #[test]
    fn framing_finds_the_first_ready_for_query_split_anywhere() {
        let mut stream = typed(b'R', &0u32.to_be_bytes());
        stream.extend(typed(b'S', b"server_version\x0016.4\0"));
        stream.extend(typed(b'K', &[0; 8]));
        stream.extend(typed(b'Z', b"I"));
        let end = stream.len();
        stream.extend(typed(b'C', b"SET\0"));
        stream.extend(typed(b'Z', b"I"));
        for split in 0..stream.len() {
            let mut framing = Framing::default();
            let found = match framing.scan(&stream[..split]) {
                Scan::Ready(at) => at,
                Scan::More => split + framing.scan(&stream[split..]).ready(),
                Scan::Error => panic!("split at {split}"),
            };
            assert_eq!(found, end, "split at {split}");
        }
        let mut framing = Framing::default();
        let mut refused = typed(b'S', b"a\0b\0");
        refused.extend(typed(b'E', b"SFATAL\0C3D000\0\0"));
        refused.extend(typed(b'Z', b"I"));
        assert_eq!(framing.scan(&refused), Scan::Error);
    }

    impl Scan {
        fn ready(self) -> usize {
            match self {
                Self::Ready(at) => at,
                other => panic!("{other:?}"),
            }
        }
    }

    /// One poll of a read: `None` while it waits.
    fn poll_once<S: AsyncRead + AsyncWrite + Unpin>(
        stream: &mut Authenticate<S>,
        buf: &mut [u8],
    ) -> Option<usize> {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut read = ReadBuf::new(buf);
        match Pin::new(stream).poll_read(&mut cx, &mut read) {
            Poll::Ready(r) => {
                r.unwrap();
                Some(read.filled().len())
            }
            Poll::Pending => None,
        }
    }

    /// The early query goes out in the same write as the password message; the caller gets the
    /// start-up up to its `ReadyForQuery`, the query's answer only once it has written that query
    /// itself, and those bytes never reach the server twice.
    #[tokio::test]
    async fn the_early_query_rides_with_the_last_answer_and_its_answer_waits_for_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let query = b"Q\0\0\0\x0dSELECT 1\0".to_vec();
        let settings = Arc::new(AuthSettings {
            user: "user".into(),
            password: Password::from("pencil"),
            channel_binding: ChannelBinding::Disable,
            keys: Box::leak(Box::new(ScramCache::new(16, Duration::from_secs(60)))),
            early_query: Some(query.clone()),
        });
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let mut stream = Authenticate::raw(client, settings, true, SharedTrace::default());
        let mut buf = vec![0u8; 4096];

        cleartext_login(&mut stream, &mut server, &query).await;

        // The server's start-up and the query's answer arrive together.
        let mut start = typed(b'R', &0u32.to_be_bytes());
        start.extend(typed(b'S', b"server_version\x0016.4\0"));
        start.extend(typed(b'K', &[0; 8]));
        start.extend(typed(b'Z', b"I"));
        let answer = [
            typed(b'T', &[0, 0]),
            typed(b'C', b"SELECT 1\0"),
            typed(b'Z', b"I"),
        ]
        .concat();
        server
            .write_all(&[start.clone(), answer.clone()].concat())
            .await
            .unwrap();
        let mut up = Vec::new();
        while up.len() < start.len() {
            let n = stream.read(&mut buf).await.unwrap();
            up.extend_from_slice(&buf[..n]);
        }
        assert_eq!(up, start, "the start-up only, up to its ReadyForQuery");
        assert_eq!(poll_once(&mut stream, &mut buf), None, "the answer is held");

        // The caller writes the query: taken as written, and the answer goes up.
        stream.write_all(&query).await.unwrap();
        stream.flush().await.unwrap();
        let mut up = Vec::new();
        while up.len() < answer.len() {
            let n = stream.read(&mut buf).await.unwrap();
            up.extend_from_slice(&buf[..n]);
        }
        assert_eq!(up, answer);
        // What the caller writes next reaches the server; the query did not, twice.
        let terminate = typed(b'X', b"");
        stream.write_all(&terminate).await.unwrap();
        let mut got = vec![0u8; terminate.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, terminate);
    }

    /// Without an early query (pools), nothing follows the answer and nothing is held.
    #[tokio::test]
    async fn without_an_early_query_the_layer_steps_aside_at_authentication_ok() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let mut stream = Authenticate::raw(
            client,
            settings(ChannelBinding::Disable),
            true,
            SharedTrace::default(),
        );
        let mut buf = vec![0u8; 4096];
        cleartext_login(&mut stream, &mut server, &[]).await;
        let mut rest = typed(b'R', &0u32.to_be_bytes());
        rest.extend(typed(b'Z', b"I"));
        rest.extend(typed(b'N', b"SNOTICE\0\0"));
        server.write_all(&rest).await.unwrap();
        let mut up = Vec::new();
        while up.len() < rest.len() {
            let n = stream.read(&mut buf).await.unwrap();
            up.extend_from_slice(&buf[..n]);
        }
        assert_eq!(up, rest);
    }

    #[test]
    fn plain_passwords_only_where_allowed() {
        let mut a = authenticator(ChannelBinding::Prefer, None);
        assert_eq!(a.request(3, b"").map(|_| ()), Err(Refusal::PlainPassword));
        assert_eq!(
            a.request(5, b"salt").map(|_| ()),
            Err(Refusal::PlainPassword)
        );
        a.plain_allowed = true;
        let clear = a.request(3, b"").unwrap().unwrap();
        assert_eq!(&clear[..], b"p\0\0\0\x0bpencil\0");
        let md5 = a.request(5, b"salt").unwrap().unwrap();
        let expected = postgres_protocol::authentication::md5_hash(b"user", b"pencil", *b"salt");
        assert_eq!(&md5[5..md5.len() - 1], expected.as_bytes());
    }
}
