//! Length-prefixed framing of a byte stream, sans-IO.
//!
//! On a sync stream every [`Message`](crate::wire::Message) travels as one frame: its
//! length `n` as a 4-byte big-endian unsigned integer, then the `n` bytes of its payload
//! (`docs/protocol.md` §6.2). A frame may be empty (`n = 0`); what an empty payload means
//! is the message decoder's business, not the framing's.
//!
//! - Writing: [`length_prefix`] gives the 4 bytes to send before a payload, and
//!   [`encode_frame`] appends a whole frame to a buffer.
//! - Reading: a [`FrameDecoder`] takes the bytes of a stream as they arrive, in chunks of
//!   any size ([`FrameDecoder::handle_bytes`]), and the end of the stream
//!   ([`FrameDecoder::handle_end`]); [`FrameDecoder::poll_frame`] yields each whole
//!   payload, in order. A length above the decoder's bound is refused as soon as its 4
//!   bytes are in, before any of its payload is buffered or allocated. A stream may end
//!   only between frames.
//!
//! The decoder does no I/O and keeps no clock: the same bytes give the same frames and the
//! same error however they are cut into chunks. A reader that must not take bytes past the
//! end of one frame (the node reads one frame per call from a QUIC stream) asks
//! [`FrameDecoder::needed`] how many to read next.

use std::collections::VecDeque;

/// Bytes of the length prefix before each payload.
pub const LEN_PREFIX: usize = 4;

/// Why a stream of frames was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame announced a length above the decoder's bound. None of its payload was
    /// buffered.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced length.
        len: u32,
        /// The decoder's bound.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended in the middle of a frame, after {received} bytes of it")]
    Truncated {
        /// Bytes of the frame (length prefix included) received before the end.
        received: usize,
    },
}

/// A payload too long for a 4-byte length prefix (more than `u32::MAX` bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload of {len} bytes is too large for a frame")]
pub struct PayloadTooLarge {
    /// The payload's length.
    pub len: usize,
}

/// The length prefix of a frame whose payload is `payload_len` bytes long.
pub fn length_prefix(payload_len: usize) -> Result<[u8; LEN_PREFIX], PayloadTooLarge> {
    u32::try_from(payload_len)
        .map(u32::to_be_bytes)
        .map_err(|_| PayloadTooLarge { len: payload_len })
}

/// Appends one frame holding `payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), PayloadTooLarge> {
    let prefix = length_prefix(payload.len())?;
    out.reserve(LEN_PREFIX + payload.len());
    out.extend_from_slice(&prefix);
    out.extend_from_slice(payload);
    Ok(())
}

/// Splits a byte stream into frames: bytes in with [`handle_bytes`](Self::handle_bytes)
/// and [`handle_end`](Self::handle_end), payloads out with
/// [`poll_frame`](Self::poll_frame).
///
/// Whole frames wait in the decoder until they are polled, so it holds at most what its
/// caller has handed it. After an error, or after the end of the stream, it takes no more
/// bytes.
#[derive(Debug)]
pub struct FrameDecoder {
    /// The largest payload accepted.
    max_len: usize,
    /// The length prefix of the frame in progress, as far as it has arrived.
    prefix: [u8; LEN_PREFIX],
    /// How many bytes of `prefix` have arrived.
    prefix_len: usize,
    /// The announced length of the frame in progress, once accepted.
    len: usize,
    /// The payload of the frame in progress, once its length has been accepted.
    payload: Option<Vec<u8>>,
    /// Whole payloads not yet polled, oldest first.
    ready: VecDeque<Vec<u8>>,
    /// Why the stream was refused; reported once the frames before it are polled.
    error: Option<FrameError>,
    /// The stream has ended.
    ended: bool,
}

impl FrameDecoder {
    /// A decoder that accepts payloads of at most `max_len` bytes
    /// ([`MAX_FRAME`](crate::wire::MAX_FRAME) on a sync stream).
    pub fn new(max_len: usize) -> FrameDecoder {
        FrameDecoder {
            max_len,
            prefix: [0; LEN_PREFIX],
            prefix_len: 0,
            len: 0,
            payload: None,
            ready: VecDeque::new(),
            error: None,
            ended: false,
        }
    }

    /// Takes the next bytes of the stream, of any length. Bytes that come after an error
    /// or after [`handle_end`](Self::handle_end) are ignored.
    pub fn handle_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.error.is_none() && !self.ended {
            match &mut self.payload {
                None => {
                    let take = (LEN_PREFIX - self.prefix_len).min(bytes.len());
                    let (head, rest) = bytes.split_at(take);
                    self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(head);
                    self.prefix_len += take;
                    bytes = rest;
                    if self.prefix_len == LEN_PREFIX {
                        self.start_payload();
                    }
                }
                Some(payload) => {
                    let take = (self.len - payload.len()).min(bytes.len());
                    let (head, rest) = bytes.split_at(take);
                    payload.extend_from_slice(head);
                    bytes = rest;
                    if payload.len() == self.len {
                        self.finish_frame();
                    }
                }
            }
        }
    }

    /// The stream has ended. It must end between frames: the end of a stream in the middle
    /// of a frame is an error ([`FrameError::Truncated`]).
    pub fn handle_end(&mut self) {
        if self.ended || self.error.is_some() {
            self.ended = true;
            return;
        }
        self.ended = true;
        let received = self.prefix_len + self.payload.as_ref().map_or(0, Vec::len);
        if received > 0 {
            self.error = Some(FrameError::Truncated { received });
        }
    }

    /// The next whole payload, in the order the frames came; `Ok(None)` when none is
    /// waiting. Once the frames before it are polled, an error is returned at every call.
    #[must_use = "a polled frame is removed from the decoder"]
    pub fn poll_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(payload) = self.ready.pop_front() {
            return Ok(Some(payload));
        }
        match &self.error {
            Some(error) => Err(error.clone()),
            None => Ok(None),
        }
    }

    /// How many more bytes complete the frame in progress (its length prefix, or its
    /// payload once the length is in); 0 after an error or the end of the stream. A reader
    /// that reads at most this many bytes at a time never takes bytes of the next frame.
    pub fn needed(&self) -> usize {
        if self.error.is_some() || self.ended {
            return 0;
        }
        match &self.payload {
            None => LEN_PREFIX - self.prefix_len,
            Some(payload) => self.len - payload.len(),
        }
    }

    /// The stream ended cleanly between frames and every frame has been polled.
    pub fn is_finished(&self) -> bool {
        self.ended && self.error.is_none() && self.ready.is_empty()
    }

    /// The length prefix is complete: refuses a length over the bound, otherwise allocates
    /// the payload (an empty frame is whole at once).
    fn start_payload(&mut self) {
        let len = u32::from_be_bytes(self.prefix);
        match usize::try_from(len).ok().filter(|&n| n <= self.max_len) {
            None => {
                self.error = Some(FrameError::TooLarge {
                    len,
                    max: self.max_len,
                });
            }
            Some(0) => self.finish_frame_with(Vec::new()),
            Some(n) => {
                self.len = n;
                self.payload = Some(Vec::with_capacity(n));
            }
        }
    }

    /// The payload in progress is whole.
    fn finish_frame(&mut self) {
        let payload = self.payload.take().unwrap_or_default();
        self.finish_frame_with(payload);
    }

    fn finish_frame_with(&mut self, payload: Vec<u8>) {
        self.ready.push_back(payload);
        self.prefix_len = 0;
        self.payload = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Frames, then how the stream ended: `Ok(())` cleanly, or the error.
    type Outcome = (Vec<Vec<u8>>, Result<(), FrameError>);

    /// Feeds `chunks` then the end of the stream, polling after every chunk.
    fn decode<'a>(max_len: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
        let mut decoder = FrameDecoder::new(max_len);
        let mut frames = Vec::new();
        let mut drain = |decoder: &mut FrameDecoder| -> Result<(), FrameError> {
            while let Some(frame) = decoder.poll_frame()? {
                frames.push(frame);
            }
            Ok(())
        };
        for chunk in chunks {
            decoder.handle_bytes(chunk);
            if let Err(error) = drain(&mut decoder) {
                return (frames, Err(error));
            }
        }
        decoder.handle_end();
        let end = drain(&mut decoder);
        assert_eq!(decoder.is_finished(), end.is_ok());
        (frames, end)
    }

    fn encode(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_frame(p, &mut out).expect("small payload");
        }
        out
    }

    /// The stream cut at the given ascending offsets.
    fn cut<'a>(stream: &'a [u8], offsets: &[usize]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut at = 0;
        for &o in offsets {
            chunks.push(&stream[at..o]);
            at = o;
        }
        chunks.push(&stream[at..]);
        chunks
    }

    #[test]
    fn the_wire_format_is_a_big_endian_length_then_the_payload() {
        assert_eq!(length_prefix(0), Ok([0, 0, 0, 0]));
        assert_eq!(length_prefix(0x0102_0304), Ok([1, 2, 3, 4]));
        let mut out = vec![9];
        encode_frame(b"abc", &mut out).expect("small payload");
        encode_frame(b"", &mut out).expect("empty payload");
        assert_eq!(out, [9, 0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0]);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_payload_over_u32_max_has_no_prefix() {
        let len = u32::MAX as usize + 1;
        assert_eq!(length_prefix(len), Err(PayloadTooLarge { len }));
        assert_eq!(length_prefix(len - 1), Ok([0xff; 4]));
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let payloads = vec![
            vec![],
            b"a".to_vec(),
            vec![],
            (0..=255).collect(),
            b"xyz".to_vec(),
        ];
        let stream = encode(&payloads);
        for i in 0..=stream.len() {
            assert_eq!(
                decode(300, cut(&stream, &[i])),
                (payloads.clone(), Ok(())),
                "split at {i}"
            );
            for j in i..=stream.len() {
                assert_eq!(
                    decode(300, cut(&stream, &[i, j])),
                    (payloads.clone(), Ok(())),
                    "split at {i} and {j}"
                );
            }
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode(300, bytewise), (payloads, Ok(())));
    }

    #[test]
    fn a_length_over_the_bound_is_refused_before_its_payload() {
        let mut decoder = FrameDecoder::new(8);
        decoder.handle_bytes(&[0, 0, 0, 1, 7, 0, 0, 0]);
        assert_eq!(decoder.needed(), 1);
        // The second frame's length completes: refused with no payload byte sent.
        decoder.handle_bytes(&[9]);
        assert_eq!(decoder.needed(), 0);
        decoder.handle_bytes(&[1; 64]);
        decoder.handle_end();
        // The frame before it is still delivered, then the error, at every poll.
        assert_eq!(decoder.poll_frame(), Ok(Some(vec![7])));
        let too_large = Err(FrameError::TooLarge { len: 9, max: 8 });
        assert_eq!(decoder.poll_frame(), too_large);
        assert_eq!(decoder.poll_frame(), too_large);
        assert!(!decoder.is_finished());
        // Nothing of the refused frame was buffered.
        assert!(decoder.payload.is_none() && decoder.ready.is_empty());
    }

    #[test]
    fn the_largest_length_is_refused_at_the_protocol_bound() {
        let max = crate::wire::MAX_FRAME;
        assert_eq!(
            decode(max, [&[0xff; 4][..]]),
            (vec![], Err(FrameError::TooLarge { len: u32::MAX, max }))
        );
        let over = (max as u32 + 1).to_be_bytes();
        assert_eq!(
            decode(max, [&over[..]]),
            (
                vec![],
                Err(FrameError::TooLarge {
                    len: max as u32 + 1,
                    max
                })
            )
        );
        // Exactly the bound is a frame.
        let mut decoder = FrameDecoder::new(max);
        decoder.handle_bytes(&(max as u32).to_be_bytes());
        assert_eq!(decoder.needed(), max);
        assert_eq!(decoder.poll_frame(), Ok(None));
    }

    #[test]
    fn a_frame_at_the_bound_is_accepted() {
        let payload = vec![5u8; 300];
        assert_eq!(
            decode(300, [&encode(std::slice::from_ref(&payload))[..]]),
            (vec![payload], Ok(()))
        );
    }

    #[test]
    fn an_empty_frame_is_a_frame_and_an_empty_stream_is_none() {
        assert_eq!(decode(8, [&[0, 0, 0, 0][..]]), (vec![vec![]], Ok(())));
        assert_eq!(decode(0, [&[0, 0, 0, 0][..]]), (vec![vec![]], Ok(())));
        assert_eq!(decode(8, [&[][..]]), (vec![], Ok(())));
        assert_eq!(decode(8, []), (vec![], Ok(())));
        // An empty frame is whole as soon as its length is in.
        let mut decoder = FrameDecoder::new(8);
        decoder.handle_bytes(&[0, 0, 0, 0]);
        assert_eq!(decoder.needed(), LEN_PREFIX);
        assert_eq!(decoder.poll_frame(), Ok(Some(vec![])));
        assert_eq!(decoder.poll_frame(), Ok(None));
        assert!(!decoder.is_finished());
    }

    #[test]
    fn a_stream_may_end_only_between_frames() {
        let truncated = |received| Err(FrameError::Truncated { received });
        assert_eq!(decode(8, [&[0, 0][..]]), (vec![], truncated(2)));
        assert_eq!(decode(8, [&[0, 0, 0, 1][..]]), (vec![], truncated(4)));
        assert_eq!(decode(8, [&[0, 0, 0, 3, 1][..]]), (vec![], truncated(5)));
        assert_eq!(
            decode(8, [&[0, 0, 0, 1, 7][..], &[0, 0, 0, 2, 1][..]]),
            (vec![vec![7]], truncated(5))
        );
        // Bytes after the end are ignored; the end is not repeated.
        let mut decoder = FrameDecoder::new(8);
        decoder.handle_end();
        decoder.handle_bytes(&[0, 0, 0, 0]);
        decoder.handle_end();
        assert_eq!(decoder.needed(), 0);
        assert_eq!(decoder.poll_frame(), Ok(None));
        assert!(decoder.is_finished());
    }

    #[test]
    fn needed_counts_down_to_the_end_of_the_frame() {
        let mut decoder = FrameDecoder::new(8);
        assert_eq!(decoder.needed(), 4);
        decoder.handle_bytes(&[0, 0]);
        assert_eq!(decoder.needed(), 2);
        decoder.handle_bytes(&[0, 3]);
        assert_eq!(decoder.needed(), 3);
        decoder.handle_bytes(&[1, 2]);
        assert_eq!(decoder.needed(), 1);
        assert_eq!(decoder.poll_frame(), Ok(None));
        decoder.handle_bytes(&[3]);
        assert_eq!(decoder.needed(), 4);
        assert_eq!(decoder.poll_frame(), Ok(Some(vec![1, 2, 3])));
    }

    /// Offsets to cut a stream of `len` bytes at, ascending, from arbitrary numbers.
    fn offsets(len: usize, raw: &[usize]) -> Vec<usize> {
        let mut offsets: Vec<usize> = raw.iter().map(|r| r % (len + 1)).collect();
        offsets.sort_unstable();
        offsets
    }

    proptest! {
        #[test]
        fn encoded_frames_decode_to_themselves_in_any_chunks(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8),
            raw in prop::collection::vec(any::<usize>(), 0..16),
        ) {
            let stream = encode(&payloads);
            let chunks = cut(&stream, &offsets(stream.len(), &raw));
            prop_assert_eq!(decode(64, chunks), (payloads, Ok(())));
        }

        #[test]
        fn any_bytes_decode_alike_in_any_chunks(
            stream in prop::collection::vec(any::<u8>(), 0..256),
            max_len in 0usize..64,
            raw in prop::collection::vec(any::<usize>(), 0..16),
        ) {
            let whole = decode(max_len, [&stream[..]]);
            let chunks = cut(&stream, &offsets(stream.len(), &raw));
            prop_assert_eq!(decode(max_len, chunks), whole);
        }
    }
}
