//! SPDY/3.1 framing as the Kubernetes clients use it (moby/spdystream under client-go): frame
//! encoding and decoding and the zlib-compressed header blocks with SPDY's preset dictionary.
//! The session (stream multiplexing) is in [`session`].
//!
//! No flow control is enforced: spdystream neither sends nor honours WINDOW_UPDATE, so a
//! window would only stall transfers after 64 KiB.

pub mod session;

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::StreamingError;

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// Data frame flag: last frame of the sender's half of the stream.
pub const FLAG_FIN: u8 = 0x01;
/// Largest frame accepted (the 24-bit length field allows 16 MiB).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Header names and values, in order. Names are lowercase on the wire.
pub type Headers = Vec<(String, String)>;

/// The header dictionary of the SPDY/3 draft, section 2.6.10.1: first header names and common
/// values as length-prefixed strings, then a run of status codes, reason phrases, dates and
/// media types. Both sides prime zlib with it, so it must be byte-exact.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
            "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
            "cache-control", "connection", "content-base", "content-encoding", "content-language",
            "content-length", "content-location", "content-md5", "content-range", "content-type",
            "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
            "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
            "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range",
            "referer", "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
            "user-agent", "vary", "via", "warning", "www-authenticate", "method", "get", "status",
            "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
        ];
        const CODES: &[u16] = &[
            100, 101, 201, 202, 205, 206, 300, 302, 303, 304, 305, 306, 307, 402, 405, 406, 407, 408,
            409, 410, 411, 412, 413, 414, 415, 416, 417, 502, 504, 505,
        ];
        const TAIL: &[&str] = &[
            "203 Non-Authoritative Information",
            "204 No Content",
            "301 Moved Permanently",
            "400 Bad Request",
            "401 Unauthorized",
            "403 Forbidden",
            "404 Not Found",
            "500 Internal Server Error",
            "501 Not Implemented",
            "503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
            " 00:00:00",
            " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
            "text/plain,text/javascript,public",
            "private",
            "max-age=",
            "gzip,deflate,sdch",
            "charset=utf-8",
            "charset=iso-8859-1,utf-,*,enq=0.",
        ];
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        for c in CODES {
            d.extend_from_slice(c.to_string().as_bytes());
        }
        for t in TAIL {
            d.extend_from_slice(t.as_bytes());
        }
        d
    })
}

/// Control frame types used here.
pub mod kind {
    /// Open a stream.
    pub const SYN_STREAM: u16 = 1;
    /// Accept a stream.
    pub const SYN_REPLY: u16 = 2;
    /// Abort a stream.
    pub const RST_STREAM: u16 = 3;
    /// Session settings.
    pub const SETTINGS: u16 = 4;
    /// Liveness check, echoed back.
    pub const PING: u16 = 6;
    /// Session shutdown.
    pub const GOAWAY: u16 = 7;
    /// More headers on a stream.
    pub const HEADERS: u16 = 8;
    /// Flow-control credit.
    pub const WINDOW_UPDATE: u16 = 9;
}

/// A frame as read off the wire. Header blocks are still compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFrame {
    /// A control frame.
    Control {
        /// Frame type ([`kind`]).
        kind: u16,
        /// Flags.
        flags: u8,
        /// Frame body.
        body: Vec<u8>,
    },
    /// A data frame.
    Data {
        /// Stream.
        stream_id: u32,
        /// Flags ([`FLAG_FIN`]).
        flags: u8,
        /// Payload.
        data: Vec<u8>,
    },
}

/// Read one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<RawFrame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "spdy: frame too large"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    if head[0] & 0x80 != 0 {
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("spdy: unsupported version {version}")));
        }
        Ok(Some(RawFrame::Control { kind: u16::from_be_bytes([head[2], head[3]]), flags, body }))
    } else {
        let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
        Ok(Some(RawFrame::Data { stream_id, flags, data: body }))
    }
}

/// Encode a control frame.
pub fn control_frame(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

/// Encode a data frame.
pub fn data_frame(stream_id: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
    out
}

/// Big-endian u32 at `at`, with the reserved top bit cleared (stream ids).
pub fn stream_id_at(body: &[u8], at: usize) -> Option<u32> {
    let b = body.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
}

/// Serialize a header block (before compression): count, then length-prefixed names and values.
pub fn encode_header_block(headers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (k, v) in headers {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.to_ascii_lowercase().as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Parse an uncompressed header block. A value holding NUL-separated parts yields one pair
/// per part, as the spec says multiple values are sent.
pub fn decode_header_block(raw: &[u8]) -> Result<Headers, StreamingError> {
    let bad = || StreamingError::Protocol("truncated spdy header block".into());
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8], StreamingError> {
        let s = raw.get(pos..pos + n).ok_or_else(bad)?;
        pos += n;
        Ok(s)
    };
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = be(take(4)?);
    let mut out = Vec::new();
    for _ in 0..count {
        let klen = be(take(4)?);
        let key = String::from_utf8_lossy(take(klen)?).to_ascii_lowercase();
        let vlen = be(take(4)?);
        let value = String::from_utf8_lossy(take(vlen)?).into_owned();
        for part in value.split('\0') {
            out.push((key.clone(), part.to_string()));
        }
    }
    Ok(out)
}

fn zerr(what: &str, e: impl std::fmt::Display) -> StreamingError {
    StreamingError::Protocol(format!("spdy header {what}: {e}"))
}

/// Compresses outgoing header blocks; one per session and direction, since every block
/// continues the same zlib stream.
pub struct HeaderCompressor {
    z: Compress,
}

impl HeaderCompressor {
    /// A compressor primed with the SPDY dictionary.
    pub fn new() -> Result<Self, StreamingError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(dictionary()).map_err(|e| zerr("compression", e))?;
        Ok(Self { z })
    }

    /// Compress one header block, ending with a sync flush so the peer can decode it alone.
    pub fn compress(&mut self, headers: &[(String, String)]) -> Result<Vec<u8>, StreamingError> {
        let raw = encode_header_block(headers);
        let start = self.z.total_in();
        let mut out = Vec::with_capacity(raw.len() + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let done = (self.z.total_in() - start) as usize;
            self.z.compress_vec(&raw[done..], &mut out, FlushCompress::Sync).map_err(|e| zerr("compression", e))?;
            let done = (self.z.total_in() - start) as usize;
            // A sync flush is complete once all input is in and zlib left spare room.
            if done == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompresses incoming header blocks (the peer's zlib stream, continued across frames).
pub struct HeaderDecompressor {
    z: Decompress,
}

impl HeaderDecompressor {
    /// A fresh decompressor; the dictionary is supplied when zlib asks for it.
    pub fn new() -> Self {
        Self { z: Decompress::new(true) }
    }

    /// Decompress and parse one header block.
    pub fn decompress(&mut self, data: &[u8]) -> Result<Headers, StreamingError> {
        let start = self.z.total_in();
        let mut out = Vec::with_capacity(data.len() * 4 + 64);
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(1024);
            }
            let done = (self.z.total_in() - start) as usize;
            let before = (self.z.total_in(), self.z.total_out());
            match self.z.decompress_vec(&data[done..], &mut out, FlushDecompress::Sync) {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z.set_dictionary(dictionary()).map_err(|e| zerr("dictionary", e))?;
                    continue;
                }
                Err(e) => return Err(zerr("decompression", e)),
            }
            let done = (self.z.total_in() - start) as usize;
            if done == data.len() && out.len() < out.capacity() {
                break;
            }
            if (self.z.total_in(), self.z.total_out()) == before {
                return Err(zerr("decompression", "no progress"));
            }
        }
        decode_header_block(&out)
    }
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

/// The value of header `name` (lowercase), if present.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_has_the_specified_shape() {
        let d = dictionary();
        assert_eq!(d.len(), 1423, "SPDY/3 dictionary is 1423 bytes");
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
        // zlib identifies the dictionary by its Adler-32; Go's reader checks it.
        let mut z = Compress::new(Compression::default(), true);
        let adler = z.set_dictionary(d).unwrap();
        assert_eq!(adler, adler32(d));
    }

    fn adler32(d: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in d {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn header_blocks_round_trip_across_a_session() {
        let mut c = HeaderCompressor::new().unwrap();
        let mut d = HeaderDecompressor::new();
        let first: Headers = vec![("streamtype".into(), "error".into()), ("port".into(), "80".into())];
        let second: Headers = vec![("streamType".into(), "data".into()), ("requestid".into(), "0".into())];
        let a = c.compress(&first).unwrap();
        // The zlib header announces a preset dictionary (FDICT bit).
        assert_eq!(a[0], 0x78);
        assert_ne!(a[1] & 0x20, 0);
        let b = c.compress(&second).unwrap();
        assert_eq!(d.decompress(&a).unwrap(), first);
        let got = d.decompress(&b).unwrap();
        assert_eq!(got[0], ("streamtype".to_string(), "data".to_string()), "names are lowercased");
        assert_eq!(header(&got, "requestid"), Some("0"));
    }

    #[test]
    fn nul_separated_values_become_several_headers() {
        let raw = encode_header_block(&[("x".into(), "a\0b".into())]);
        assert_eq!(decode_header_block(&raw).unwrap(), vec![("x".into(), "a".into()), ("x".into(), "b".into())]);
        assert!(decode_header_block(&raw[..raw.len() - 1]).is_err());
    }

    #[tokio::test]
    async fn frames_encode_and_decode() {
        let c = control_frame(kind::PING, 0, &7u32.to_be_bytes());
        assert_eq!(&c[..8], &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4]);
        let d = data_frame(5, FLAG_FIN, b"abc");
        assert_eq!(&d[..8], &[0, 0, 0, 5, 1, 0, 0, 3]);
        let mut wire = c.clone();
        wire.extend(&d);
        let mut r = &wire[..];
        assert_eq!(read_frame(&mut r).await.unwrap(), Some(RawFrame::Control { kind: kind::PING, flags: 0, body: vec![0, 0, 0, 7] }));
        assert_eq!(read_frame(&mut r).await.unwrap(), Some(RawFrame::Data { stream_id: 5, flags: FLAG_FIN, data: b"abc".to_vec() }));
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
        let mut v2 = control_frame(kind::PING, 0, &[0; 4]);
        v2[1] = 2;
        assert!(read_frame(&mut &v2[..]).await.is_err(), "only version 3 is spoken");
    }
}
