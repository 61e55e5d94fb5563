//! A small DNS wire codec (RFC 1035, RFC 6891 EDNS0), just enough for an authoritative cluster
//! zone and a forwarder.
//!
//! Hand-written instead of pulling in a full DNS library: the server only ever needs to read one
//! question plus an OPT record, and to write a handful of record types, and doing that directly
//! keeps the hot path free of per-record allocations.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type NS.
pub const TYPE_NS: u16 = 2;
/// Record type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Record type SOA.
pub const TYPE_SOA: u16 = 6;
/// Record type PTR.
pub const TYPE_PTR: u16 = 12;
/// Record type TXT.
pub const TYPE_TXT: u16 = 16;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Record type SRV.
pub const TYPE_SRV: u16 = 33;
/// Pseudo record type OPT (EDNS0).
pub const TYPE_OPT: u16 = 41;
/// Query type ANY.
pub const TYPE_ANY: u16 = 255;
/// Class IN.
pub const CLASS_IN: u16 = 1;
/// Query class ANY.
pub const CLASS_ANY: u16 = 255;

/// Response code NOERROR.
pub const RCODE_NOERROR: u16 = 0;
/// Response code FORMERR.
pub const RCODE_FORMERR: u16 = 1;
/// Response code SERVFAIL.
pub const RCODE_SERVFAIL: u16 = 2;
/// Response code NXDOMAIN.
pub const RCODE_NXDOMAIN: u16 = 3;
/// Response code NOTIMP.
pub const RCODE_NOTIMP: u16 = 4;
/// Response code REFUSED.
pub const RCODE_REFUSED: u16 = 5;
/// Extended response code BADVERS (needs EDNS: upper bits travel in the OPT record).
pub const RCODE_BADVERS: u16 = 16;

/// Header length.
pub const HEADER_LEN: usize = 12;
/// Largest UDP payload without EDNS (RFC 1035).
pub const MIN_UDP_SIZE: usize = 512;
/// The payload size this server advertises and honours at most over UDP: the DNS flag day 2020
/// value, which avoids IP fragmentation on ordinary paths.
pub const MAX_UDP_SIZE: usize = 1232;

const FLAG_QR: u16 = 0x8000;
pub(super) const FLAG_AA: u16 = 0x0400;
pub(super) const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
pub(super) const EDNS_DO: u32 = 0x8000;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message ended in the middle of a field.
    #[error("dns message truncated at offset {0}")]
    Short(usize),
    /// A name was malformed (bad label type, pointer loop, too long).
    #[error("malformed dns name at offset {0}")]
    BadName(usize),
    /// The message was well formed but not something this codec accepts (e.g. two OPT records).
    #[error("unsupported dns message: {0}")]
    Unsupported(&'static str),
}

/// EDNS0 parameters taken from a request's OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size.
    pub udp_size: u16,
    /// EDNS version (only 0 exists).
    pub version: u8,
    /// DNSSEC OK bit, echoed back as RFC 3225 asks.
    pub dnssec_ok: bool,
}

/// A parsed query: header fields, the single question and EDNS, borrowing from the packet.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Query id.
    pub id: u16,
    /// Opcode (0 = QUERY).
    pub opcode: u8,
    /// Recursion desired.
    pub rd: bool,
    /// Checking disabled bit, echoed.
    pub cd: bool,
    /// The question section as it arrived (name, type, class), echoed verbatim so that clients
    /// using 0x20 case randomisation see their own spelling.
    pub question: &'a [u8],
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// EDNS parameters when the query carried an OPT record.
    pub edns: Option<Edns>,
}

impl Request<'_> {
    /// The UDP payload size the client advertised (512 without EDNS), unclamped above.
    pub fn client_udp_size(&self) -> usize {
        self.edns
            .map_or(MIN_UDP_SIZE, |e| (e.udp_size as usize).max(MIN_UDP_SIZE))
    }

    /// Largest UDP response this server sends this client for its own answers: the client's
    /// size, capped at [`MAX_UDP_SIZE`] to stay clear of IP fragmentation.
    pub fn max_udp_size(&self) -> usize {
        match self.edns {
            Some(e) => (e.udp_size as usize).clamp(MIN_UDP_SIZE, MAX_UDP_SIZE),
            None => MIN_UDP_SIZE,
        }
    }
}

/// Reads the header id of a message, if it has a header at all.
pub fn message_id(msg: &[u8]) -> Option<u16> {
    (msg.len() >= HEADER_LEN).then(|| u16::from_be_bytes([msg[0], msg[1]]))
}

/// Whether a message has the QR (response) bit set.
pub fn is_response(msg: &[u8]) -> bool {
    msg.len() >= HEADER_LEN && msg[2] & 0x80 != 0
}

/// Whether a message has the TC (truncated) bit set.
pub fn is_truncated(msg: &[u8]) -> bool {
    msg.len() >= HEADER_LEN && u16::from_be_bytes([msg[2], msg[3]]) & FLAG_TC != 0
}

pub(super) fn be16(msg: &[u8], off: usize) -> Result<u16, WireError> {
    msg.get(off..off + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(WireError::Short(off))
}

pub(super) fn be32(msg: &[u8], off: usize) -> Result<u32, WireError> {
    msg.get(off..off + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(WireError::Short(off))
}

/// Decodes the name at `off` into `out` in lowercase presentation form without the trailing dot
/// (the root is ""), following compression pointers. Bytes that cannot appear in a cluster name
/// (dots inside a label, non-printable bytes) are written as `\DDD`, which never matches a
/// record, so such names simply fall outside the zone. Returns the offset just past the name
/// where it started.
pub fn read_name(msg: &[u8], mut off: usize, out: &mut String) -> Result<usize, WireError> {
    out.clear();
    let mut end = None;
    let mut jumps = 0;
    let mut wire_len = 1;
    loop {
        let len = *msg.get(off).ok_or(WireError::Short(off))? as usize;
        match len & 0xC0 {
            0x00 if len == 0 => {
                return Ok(end.unwrap_or(off + 1));
            }
            0x00 => {
                let label = msg
                    .get(off + 1..off + 1 + len)
                    .ok_or(WireError::Short(off))?;
                wire_len += len + 1;
                if wire_len > 255 {
                    return Err(WireError::BadName(off));
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    match b {
                        b'A'..=b'Z' => out.push((b + 32) as char),
                        b'!'..=b'~' if b != b'.' && b != b'\\' => out.push(b as char),
                        _ => {
                            out.push('\\');
                            out.push((b'0' + b / 100) as char);
                            out.push((b'0' + b / 10 % 10) as char);
                            out.push((b'0' + b % 10) as char);
                        }
                    }
                }
                off += len + 1;
            }
            0xC0 => {
                let ptr = (be16(msg, off)? & 0x3FFF) as usize;
                // Pointers must go backwards; together with the jump cap this rules out loops.
                jumps += 1;
                if ptr >= off || jumps > 64 {
                    return Err(WireError::BadName(off));
                }
                end.get_or_insert(off + 2);
                off = ptr;
            }
            _ => return Err(WireError::BadName(off)),
        }
    }
}

/// Parses a query. `qname` receives the lowercase question name.
pub fn parse_request<'a>(msg: &'a [u8], qname: &mut String) -> Result<Request<'a>, WireError> {
    if msg.len() < HEADER_LEN {
        return Err(WireError::Short(msg.len()));
    }
    let flags = be16(msg, 2)?;
    let qd = be16(msg, 4)?;
    let an = be16(msg, 6)? as usize;
    let ns = be16(msg, 8)? as usize;
    let ar = be16(msg, 10)? as usize;
    if qd != 1 {
        return Err(WireError::Unsupported("question count is not 1"));
    }
    let qend = read_name(msg, HEADER_LEN, qname)?;
    let qtype = be16(msg, qend)?;
    let qclass = be16(msg, qend + 2)?;
    let question = &msg[HEADER_LEN..qend + 4];
    // The first question can only be compressed by pointing into the header, which is
    // nonsense; rejecting it also lets the question be echoed byte for byte.
    let mut at = HEADER_LEN;
    while msg[at] != 0 {
        if msg[at] & 0xC0 != 0 {
            return Err(WireError::BadName(at));
        }
        at += msg[at] as usize + 1;
    }
    let mut off = qend + 4;
    let mut edns = None;
    let mut scratch = String::new();
    for i in 0..an + ns + ar {
        off = read_name(msg, off, &mut scratch)?;
        let rtype = be16(msg, off)?;
        let class = be16(msg, off + 2)?;
        let ttl = be32(msg, off + 4)?;
        let rdlen = be16(msg, off + 8)? as usize;
        off += 10 + rdlen;
        if off > msg.len() {
            return Err(WireError::Short(off));
        }
        if rtype == TYPE_OPT && i >= an + ns {
            if edns.is_some() {
                return Err(WireError::Unsupported("more than one opt record"));
            }
            edns = Some(Edns {
                udp_size: class,
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & EDNS_DO != 0,
            });
        }
    }
    Ok(Request {
        id: be16(msg, 0)?,
        opcode: ((flags >> 11) & 0xF) as u8,
        rd: flags & FLAG_RD != 0,
        cd: flags & 0x0010 != 0,
        question,
        qtype,
        qclass,
        edns,
    })
}

/// Record data this codec can write (and decode, for tests and for chasing CNAMEs upstream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData<'a> {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Canonical name.
    Cname(Cow<'a, str>),
    /// Reverse pointer.
    Ptr(Cow<'a, str>),
    /// Name server.
    Ns(Cow<'a, str>),
    /// Service locator.
    Srv {
        /// Priority (lower first).
        priority: u16,
        /// Relative weight within one priority.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host name.
        target: Cow<'a, str>,
    },
    /// Start of authority.
    Soa {
        /// Primary name server.
        mname: Cow<'a, str>,
        /// Responsible mailbox.
        rname: Cow<'a, str>,
        /// Serial.
        serial: u32,
        /// Refresh interval.
        refresh: u32,
        /// Retry interval.
        retry: u32,
        /// Expiry.
        expire: u32,
        /// Negative caching TTL.
        minimum: u32,
    },
    /// Any other type, carried as opaque bytes (only valid for types without names inside).
    Other(u16, Cow<'a, [u8]>),
}

impl RData<'_> {
    /// The record type number.
    pub fn rtype(&self) -> u16 {
        match self {
            RData::A(_) => TYPE_A,
            RData::Aaaa(_) => TYPE_AAAA,
            RData::Cname(_) => TYPE_CNAME,
            RData::Ptr(_) => TYPE_PTR,
            RData::Ns(_) => TYPE_NS,
            RData::Srv { .. } => TYPE_SRV,
            RData::Soa { .. } => TYPE_SOA,
            RData::Other(t, _) => *t,
        }
    }
}

/// One resource record. Names are lowercase presentation form without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr<'a> {
    /// Owner name.
    pub name: Cow<'a, str>,
    /// Time to live in seconds.
    pub ttl: u32,
    /// Record data.
    pub data: RData<'a>,
}

/// Offsets of names already written, for compression. A fixed array keeps the writer free of
/// allocations; names beyond its capacity are simply written uncompressed.
struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    base: usize,
    names: [u16; 48],
    count: usize,
}

impl<'b> Writer<'b> {
    fn new(buf: &'b mut Vec<u8>) -> Self {
        let base = buf.len();
        Writer {
            buf,
            base,
            names: [0; 48],
            count: 0,
        }
    }

    fn remember(&mut self, at: usize) {
        let rel = at - self.base;
        if rel < 0x3FFF && self.count < self.names.len() {
            self.names[self.count] = rel as u16;
            self.count += 1;
        }
    }

    /// Registers every label start of a name already in the buffer (the echoed question).
    fn remember_name_at(&mut self, mut at: usize) {
        while let Some(&len) = self.buf.get(at) {
            if len == 0 || len & 0xC0 != 0 {
                break;
            }
            self.remember(at);
            at += len as usize + 1;
        }
    }

    /// Whether the wire name at `off` (relative) equals the presentation name `name`.
    fn matches(&self, mut off: usize, name: &str) -> bool {
        let msg = &self.buf[self.base..];
        let mut rest = name.split('.');
        for _ in 0..128 {
            let Some(&len) = msg.get(off) else {
                return false;
            };
            if len & 0xC0 == 0xC0 {
                off = match msg.get(off + 1) {
                    Some(&lo) => (((len & 0x3F) as usize) << 8) | lo as usize,
                    None => return false,
                };
                continue;
            }
            if len == 0 {
                return rest.next().is_none() || name.is_empty();
            }
            let Some(want) = rest.next() else {
                return false;
            };
            let Some(label) = msg.get(off + 1..off + 1 + len as usize) else {
                return false;
            };
            if !label.eq_ignore_ascii_case(want.as_bytes()) {
                return false;
            }
            off += len as usize + 1;
        }
        false
    }

    fn name(&mut self, name: &str) {
        let mut start = 0;
        while start < name.len() {
            let suffix = &name[start..];
            if let Some(&ptr) = self.names[..self.count]
                .iter()
                .find(|&&o| self.matches(o as usize, suffix))
            {
                self.buf.extend_from_slice(&(0xC000 | ptr).to_be_bytes());
                return;
            }
            let end = suffix.find('.').map_or(name.len(), |i| start + i);
            let label = &name.as_bytes()[start..end];
            self.remember(self.buf.len());
            // Labels longer than 63 bytes cannot exist in the zone; clip defensively.
            let label = &label[..label.len().min(63)];
            self.buf.push(label.len() as u8);
            self.buf.extend_from_slice(label);
            start = end + 1;
        }
        self.buf.push(0);
    }

    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn record(&mut self, rr: &Rr<'_>) {
        self.name(&rr.name);
        self.u16(rr.data.rtype());
        self.u16(CLASS_IN);
        self.u32(rr.ttl);
        let len_at = self.buf.len();
        self.u16(0);
        match &rr.data {
            RData::A(ip) => self.buf.extend_from_slice(&ip.octets()),
            RData::Aaaa(ip) => self.buf.extend_from_slice(&ip.octets()),
            RData::Cname(n) | RData::Ptr(n) | RData::Ns(n) => self.name(n),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                self.u16(*priority);
                self.u16(*weight);
                self.u16(*port);
                self.name(target);
            }
            RData::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => {
                self.name(mname);
                self.name(rname);
                for v in [*serial, *refresh, *retry, *expire, *minimum] {
                    self.u32(v);
                }
            }
            RData::Other(_, data) => self.buf.extend_from_slice(data),
        }
        let len = (self.buf.len() - len_at - 2) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    }
}

/// What goes into a response besides the echoed request fields.
#[derive(Debug, Default)]
pub struct Sections<'a> {
    /// Response code, possibly extended (> 15 needs EDNS).
    pub rcode: u16,
    /// Authoritative answer bit.
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Rr<'a>>,
    /// Authority section.
    pub authority: Vec<Rr<'a>>,
    /// Additional section (besides OPT, which is added when the request had EDNS).
    pub additional: Vec<Rr<'a>>,
}

fn write_header(
    buf: &mut Vec<u8>,
    req: &Request<'_>,
    rcode: u16,
    aa: bool,
    tc: bool,
    counts: [u16; 4],
) {
    let mut flags = FLAG_QR | ((req.opcode as u16) << 11) | FLAG_RA | (rcode & 0xF);
    if req.rd {
        flags |= FLAG_RD;
    }
    if req.cd {
        flags |= 0x0010;
    }
    if aa {
        flags |= FLAG_AA;
    }
    if tc {
        flags |= FLAG_TC;
    }
    buf.extend_from_slice(&req.id.to_be_bytes());
    buf.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        buf.extend_from_slice(&c.to_be_bytes());
    }
}

fn write_opt(w: &mut Writer<'_>, req: &Request<'_>, rcode: u16) {
    let Some(edns) = req.edns else { return };
    w.buf.push(0);
    w.u16(TYPE_OPT);
    w.u16(MAX_UDP_SIZE as u16);
    let ttl = (((rcode >> 4) as u32) << 24) | if edns.dnssec_ok { EDNS_DO } else { 0 };
    w.u32(ttl);
    w.u16(0);
}

/// Appends a response to `buf`, fitting it into `max_size` bytes: when it does not fit, the
/// additional section is dropped first (allowed without TC), then the answer is replaced by an
/// empty one with TC set so that the client retries over TCP. Returns whether TC was set.
pub fn write_response(
    buf: &mut Vec<u8>,
    req: &Request<'_>,
    s: &Sections<'_>,
    max_size: usize,
) -> bool {
    let start = buf.len();
    let opt = req.edns.is_some() as u16;
    for (with_additional, with_answers) in [(true, true), (false, true), (false, false)] {
        buf.truncate(start);
        let an = if with_answers { s.answers.len() } else { 0 };
        let ns = if with_answers { s.authority.len() } else { 0 };
        let ar = if with_additional {
            s.additional.len()
        } else {
            0
        };
        let tc = !with_answers;
        write_header(
            buf,
            req,
            s.rcode,
            s.authoritative,
            tc,
            [1, an as u16, ns as u16, ar as u16 + opt],
        );
        buf.extend_from_slice(req.question);
        let mut w = Writer::new(buf);
        w.base = start;
        w.remember_name_at(start + HEADER_LEN);
        if with_answers {
            s.answers
                .iter()
                .chain(&s.authority)
                .for_each(|rr| w.record(rr));
        }
        if with_additional {
            s.additional.iter().for_each(|rr| w.record(rr));
        }
        write_opt(&mut w, req, s.rcode);
        if buf.len() - start <= max_size {
            return tc;
        }
    }
    true
}

/// Appends a bare error response (header, question when known, OPT) for `req`.
pub fn write_error(buf: &mut Vec<u8>, req: &Request<'_>, rcode: u16) {
    let s = Sections {
        rcode,
        ..Default::default()
    };
    write_response(buf, req, &s, usize::MAX);
}

/// Builds FORMERR for a packet that has a header but could not be parsed: the question is not
/// echoed because it could not be trusted.
pub fn write_formerr(buf: &mut Vec<u8>, msg: &[u8]) {
    let id = message_id(msg).unwrap_or(0);
    let opcode = msg.get(2).map_or(0, |b| (b >> 3) & 0xF);
    let flags = FLAG_QR | ((opcode as u16) << 11) | RCODE_FORMERR;
    buf.extend_from_slice(&id.to_be_bytes());
    buf.extend_from_slice(&flags.to_be_bytes());
    buf.extend_from_slice(&[0; 8]);
}

/// Encodes a query (used by the forwarder to chase CNAME targets, and by tests and the load
/// generator). `edns` adds an OPT record advertising that payload size.
pub fn build_query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(&id.to_be_bytes());
    buf.extend_from_slice(&FLAG_RD.to_be_bytes());
    buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, edns.is_some() as u8]);
    let mut w = Writer::new(&mut buf);
    w.count = w.names.len(); // no compression needed in a one-name message
    w.name(name.trim_end_matches('.'));
    w.u16(qtype);
    w.u16(CLASS_IN);
    if let Some(size) = edns {
        w.buf.push(0);
        w.u16(TYPE_OPT);
        w.u16(size);
        w.u32(0);
        w.u16(0);
    }
    buf
}
