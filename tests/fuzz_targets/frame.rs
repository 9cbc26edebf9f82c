//! The `frame` target: the bytes a peer writes on a sync stream, cut into frames by
//! `yizhan_protocol::frame::FrameDecoder` (the decoder the node's `net::read_frame` runs).

use yizhan_protocol::SignedChange;
use yizhan_protocol::frame::{FrameDecoder, FrameError, LEN_PREFIX, encode_frame};
use yizhan_protocol::identity::KeyCache;
use yizhan_protocol::wire::{MAX_FRAME, Message, WireDoc};

use super::common::{install_panic_hook, site};

/// The result of reading one frame from a byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameRead<'a> {
    /// The stream ended cleanly between frames.
    End,
    /// One frame's payload, and the rest of the stream.
    Frame(&'a [u8], &'a [u8]),
    /// The length is over the limit (refused before anything is allocated).
    TooLarge(u32),
    /// The stream ended inside a frame, after this many bytes of it.
    Truncated(usize),
}

/// Reads one frame from the front of `stream` as `yizhan_node::net::read_frame` reads one
/// from a QUIC stream: a [`FrameDecoder`] is given at most the bytes it still needs
/// ([`FrameDecoder::needed`]), then the end of the stream once it is exhausted.
pub fn read_frame(stream: &[u8], max_len: usize) -> FrameRead<'_> {
    let mut decoder = FrameDecoder::new(max_len);
    let mut at = 0;
    loop {
        let n = decoder.needed().min(stream.len() - at);
        if n == 0 {
            decoder.handle_end();
        } else {
            decoder.handle_bytes(&stream[at..at + n]);
            at += n;
        }
        match decoder.poll_frame() {
            Ok(Some(payload)) => {
                let (read, rest) = stream.split_at(at);
                let framed = &read[LEN_PREFIX..];
                assert_eq!(framed, payload, "the decoder changed a payload");
                return FrameRead::Frame(framed, rest);
            }
            Ok(None) if decoder.is_finished() => return FrameRead::End,
            Ok(None) => {}
            Err(FrameError::TooLarge { len, .. }) => return FrameRead::TooLarge(len),
            Err(FrameError::Truncated { received }) => return FrameRead::Truncated(received),
        }
    }
}

/// Splits a stream into frames until it ends, is truncated or a length is refused.
pub fn frames(mut stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let FrameRead::Frame(payload, rest) = read_frame(stream, MAX_FRAME) {
        out.push(payload);
        stream = rest;
    }
    out
}

/// Encodes payloads as a stream of frames (the inverse of [`frames`]).
pub fn encode_frames<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        encode_frame(p, &mut out).expect("a payload under 4 GiB");
    }
    out
}

/// The frames of a stream handed to a [`FrameDecoder`] in `chunks`, and how the stream
/// ended: `Ok(())` between frames, or the error.
fn decode_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Vec<u8>>, Result<(), FrameError>) {
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    let mut out = Vec::new();
    let mut drain = |decoder: &mut FrameDecoder| -> Result<(), FrameError> {
        while let Some(payload) = decoder.poll_frame()? {
            out.push(payload);
        }
        Ok(())
    };
    let mut ended = Ok(());
    for chunk in chunks {
        decoder.handle_bytes(chunk);
        ended = drain(&mut decoder);
        if ended.is_err() {
            break;
        }
    }
    if ended.is_ok() {
        decoder.handle_end();
        ended = drain(&mut decoder);
        assert!(decoder.is_finished() == ended.is_ok());
    }
    (out, ended)
}

/// `data` cut into chunks whose lengths are read from `data` itself (byte `i` gives the
/// `i`-th chunk `1 + byte % 64` bytes), so that a mutation moves the cuts as well.
fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    for &b in data.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at((1 + usize::from(b % 64)).min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// Decodes one frame payload as a message and checks what a decoded message promises: it
/// is within the limits, re-encodes to a payload that decodes to the same message, and
/// every change it carries can be rebuilt and verified (or refused) without a panic.
pub(super) fn check_message(payload: &[u8]) -> Option<Message> {
    let msg = Message::decode(payload).ok()?;
    let encoded = msg.encode();
    assert!(
        encoded.len() <= payload.len(),
        "a decoded message re-encodes longer than it came"
    );
    assert_eq!(
        Message::decode(&encoded).as_ref(),
        Ok(&msg),
        "a decoded message does not survive a round trip"
    );
    let docs: &[WireDoc] = match &msg {
        Message::Changes(c) => &c.docs,
        Message::Fetched(f) => &f.docs,
        _ => &[],
    };
    for wd in docs.iter().take(4) {
        if let Some(h) = &wd.header {
            let _ = h.doc_id();
        }
        for c in wd.changes.iter().take(8) {
            if let Ok((env, change)) = c.clone().into_envelope(wd.doc) {
                assert_eq!(env.hash, change.hash().into());
                let _ = SignedChange::verify_many(
                    vec![(env, Some(change))],
                    Some(site()),
                    &mut KeyCache::default(),
                );
            }
        }
    }
    Some(msg)
}

/// `frame`: the input is the byte stream a peer writes on a sync stream. It is cut into
/// frames by the protocol's [`FrameDecoder`] four ways, which must agree: frame by frame as
/// the node reads a QUIC stream ([`read_frame`]), all at once, one byte at a time, and in
/// chunks of lengths taken from the input. Each payload is decoded as a `Message`.
pub fn frame(data: &[u8]) {
    install_panic_hook();
    let mut read = Vec::new();
    let mut stream = data;
    let ended = loop {
        match read_frame(stream, MAX_FRAME) {
            FrameRead::Frame(payload, rest) => {
                assert!(payload.len() <= MAX_FRAME);
                assert_eq!(payload.len() + rest.len() + LEN_PREFIX, stream.len());
                check_message(payload);
                read.push(payload.to_vec());
                stream = rest;
            }
            FrameRead::TooLarge(len) => {
                assert!(len as usize > MAX_FRAME);
                break Err(FrameError::TooLarge {
                    len,
                    max: MAX_FRAME,
                });
            }
            FrameRead::Truncated(received) => {
                assert!(received > 0 && received <= stream.len());
                break Err(FrameError::Truncated { received });
            }
            FrameRead::End => break Ok(()),
        }
    };
    let expected = (read, ended);
    assert_eq!(decode_chunks([data]), expected, "decoded whole");
    assert_eq!(decode_chunks(data.chunks(1)), expected, "decoded bytewise");
    assert_eq!(decode_chunks(chunks(data)), expected, "decoded in chunks");
    // Also each whole input as one payload, so that mutations need not keep a length right.
    check_message(data);
}
