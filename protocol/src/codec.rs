//! Newline-delimited framing (PROTOCOL.md §1) as a [`tokio_util::codec::Decoder`].
//!
//! The decoder never returns an error for bad data: `FramedRead` ends the stream after
//! any decoder `Err` (tokio PR #4166), so over-long lines come back as
//! [`Frame::TooLarge`] values and the stream goes on. The length bound is enforced while
//! reading: once a partial line passes the limit, its bytes are dropped as they arrive
//! until the next newline, so memory stays bounded by the limit plus one read.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// One unit of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A non-blank line without its terminating `\n` (and without a trailing `\r`).
    Line(Bytes),
    /// A line longer than the limit; `len` is its length in bytes before the newline.
    TooLarge {
        /// Length of the discarded line in bytes, excluding the `\n`.
        len: usize,
    },
}

/// Splits input into lines of at most `max_len` bytes (excluding the `\n`).
///
/// Blank lines (only ASCII whitespace) are skipped.
#[derive(Debug)]
pub struct LineCodec {
    max_len: usize,
    /// Where to resume the newline search in the buffer.
    scanned: usize,
    /// `Some(n)`: inside an over-long line of which `n` bytes were dropped so far.
    discarding: Option<usize>,
}

impl LineCodec {
    /// A codec that accepts lines of up to `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        LineCodec {
            max_len,
            scanned: 0,
            discarding: None,
        }
    }

    /// The configured limit in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    fn finish_line(line: Bytes) -> Option<Frame> {
        let mut line = line;
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(Frame::Line(line))
        }
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        loop {
            if let Some(dropped) = self.discarding {
                match memchr::memchr(b'\n', buf) {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.discarding = None;
                        self.scanned = 0;
                        return Ok(Some(Frame::TooLarge { len: dropped + i }));
                    }
                    None => {
                        self.discarding = Some(dropped + buf.len());
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            match memchr::memchr(b'\n', &buf[self.scanned..]) {
                Some(offset) => {
                    let end = self.scanned + offset;
                    self.scanned = 0;
                    let mut line = buf.split_to(end + 1);
                    if end > self.max_len {
                        return Ok(Some(Frame::TooLarge { len: end }));
                    }
                    line.truncate(end);
                    if let Some(frame) = Self::finish_line(line.freeze()) {
                        return Ok(Some(frame));
                    }
                }
                None => {
                    if buf.len() > self.max_len {
                        self.discarding = Some(buf.len());
                        self.scanned = 0;
                        buf.clear();
                    } else {
                        self.scanned = buf.len();
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        self.scanned = 0;
        if let Some(dropped) = self.discarding.take() {
            return Ok(Some(Frame::TooLarge { len: dropped }));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Self::finish_line(buf.split().freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The oracle: split the whole input at once.
    fn reference(input: &[u8], max: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut pieces: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
        // The last piece has no newline; at EOF it still counts when non-empty.
        if pieces.last().is_some_and(|p| p.is_empty()) {
            pieces.pop();
        }
        for piece in pieces {
            if piece.len() > max {
                out.push(Frame::TooLarge { len: piece.len() });
            } else if let Some(f) = LineCodec::finish_line(Bytes::copy_from_slice(piece)) {
                out.push(f);
            }
        }
        out
    }

    fn run(input: &[u8], cuts: &[usize], max: usize) -> Vec<Frame> {
        let mut codec = LineCodec::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        for cut in cuts {
            if cut < pos {
                continue;
            }
            buf.extend_from_slice(&input[pos..cut]);
            pos = cut;
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
            // Memory stays bounded while reading.
            assert!(buf.len() <= max + input.len().min(max + 1) + 1);
        }
        while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_cr() {
        let frames = run(b"{\"a\":1}\r\n\n  \n{}\nabc", &[3, 9], 100);
        assert_eq!(
            frames,
            vec![
                Frame::Line(Bytes::from_static(b"{\"a\":1}")),
                Frame::Line(Bytes::from_static(b"{}")),
                Frame::Line(Bytes::from_static(b"abc")),
            ]
        );
    }

    #[test]
    fn over_long_line_is_reported_and_stream_resynchronises() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\n{}\n");
        let frames = run(&input, &[7, 13, 40], 10);
        assert_eq!(
            frames,
            vec![
                Frame::TooLarge { len: 50 },
                Frame::Line(Bytes::from_static(b"{}"))
            ]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn decoder_matches_reference_under_any_chunking(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'a'), Just(b'{'), Just(0xffu8), any::<u8>()],
                0..200,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            max in 0usize..24,
        ) {
            prop_assert_eq!(run(&input, &cuts, max), reference(&input, max));
        }
    }
}
