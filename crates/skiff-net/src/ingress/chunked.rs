//! Finding where a chunked HTTP/1.1 body ends (RFC 9112 section 7.1) without decoding it:
//! the fast path (`fast.rs`) passes chunked responses through unchanged and only needs to
//! know when the last chunk and the trailers have gone by.

/// Where the scanner is in the chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk-size line: the size so far, whether a digit was seen, whether in extensions.
    Size { size: u64, digits: bool, ext: bool },
    /// After the size line's CR.
    SizeLf { size: u64 },
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// After chunk data: CR, then LF.
    DataCr,
    DataLf,
    /// After the last chunk: a trailer line or the final empty line.
    TrailerStart,
    TrailerStartLf,
    TrailerLine,
    TrailerLineLf,
    Done,
}

/// Incremental scanner over the bytes of a chunked body.
#[derive(Debug)]
pub(crate) struct ChunkedEnd {
    state: State,
}

/// The body is not valid chunked framing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

impl ChunkedEnd {
    pub(crate) fn new() -> Self {
        ChunkedEnd { state: State::Size { size: 0, digits: false, ext: false } }
    }

    /// Feeds the next bytes of the body; `Some(n)` when the body ended after the first `n` of
    /// them (anything after belongs to the next message).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, Malformed> {
        let mut i = 0;
        while i < bytes.len() {
            if let State::Data(left) = self.state {
                // Skip the data in one step.
                let take = left.min((bytes.len() - i) as u64);
                i += take as usize;
                self.state = if take == left { State::DataCr } else { State::Data(left - take) };
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::Size { size, ext: false, .. }, _) if b.is_ascii_hexdigit() => {
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    let size = size.checked_mul(16).and_then(|s| s.checked_add(d)).ok_or(Malformed)?;
                    State::Size { size, digits: true, ext: false }
                }
                (State::Size { size, digits: true, .. }, b'\r') => State::SizeLf { size },
                (State::Size { size, digits: true, ext: false }, b';' | b' ' | b'\t') => State::Size { size, digits: true, ext: true },
                (State::Size { size, digits: true, ext: true }, _) => State::Size { size, digits: true, ext: true },
                (State::Size { .. }, _) => return Err(Malformed),
                (State::SizeLf { size: 0 }, b'\n') => State::TrailerStart,
                (State::SizeLf { size }, b'\n') => State::Data(size),
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size { size: 0, digits: false, ext: false },
                (State::TrailerStart, b'\r') => State::TrailerStartLf,
                (State::TrailerStart, _) => State::TrailerLine,
                (State::TrailerStartLf, b'\n') => {
                    self.state = State::Done;
                    return Ok(Some(i));
                }
                (State::TrailerLine, b'\r') => State::TrailerLineLf,
                (State::TrailerLine, _) => State::TrailerLine,
                (State::TrailerLineLf, b'\n') => State::TrailerStart,
                (State::Done, _) => return Ok(Some(i - 1)),
                _ => return Err(Malformed),
            };
        }
        Ok(if self.state == State::Done { Some(0) } else { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_across_any_split() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut s = ChunkedEnd::new();
            let first = s.feed(&body[..split]).unwrap();
            let got = match first {
                Some(n) => n,
                None => split + s.feed(&body[split..]).unwrap().expect("end found"),
            };
            assert_eq!(got, end, "split at {split}");
        }
    }

    #[test]
    fn empty_body_and_bad_framing() {
        let mut s = ChunkedEnd::new();
        assert_eq!(s.feed(b"0\r\n\r\n").unwrap(), Some(5));
        assert_eq!(ChunkedEnd::new().feed(b"zz\r\n"), Err(Malformed));
        assert_eq!(ChunkedEnd::new().feed(b"3\r\nabcX"), Err(Malformed));
        assert_eq!(ChunkedEnd::new().feed(b"\r\n"), Err(Malformed));
        assert_eq!(ChunkedEnd::new().feed(b"ffffffffffffffffff\r\n"), Err(Malformed));
        assert_eq!(ChunkedEnd::new().feed(b"3\r\nab").unwrap(), None);
    }
}
