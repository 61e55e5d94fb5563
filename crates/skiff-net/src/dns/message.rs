//! Decoding whole messages into owned values: off the hot path, for chasing ExternalName
//! targets upstream and for tests and tools that need to read responses.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::wire::*;
use super::wire::{be16, be32, EDNS_DO, FLAG_AA, FLAG_TC};

/// A fully decoded message, owning its data. Used off the hot path only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Id.
    pub id: u16,
    /// Raw flags word.
    pub flags: u16,
    /// Full response code (header bits plus the OPT extension).
    pub rcode: u16,
    /// Questions as (name, type, class).
    pub questions: Vec<(String, u16, u16)>,
    /// Answer section.
    pub answers: Vec<Rr<'static>>,
    /// Authority section.
    pub authority: Vec<Rr<'static>>,
    /// Additional section, without OPT.
    pub additional: Vec<Rr<'static>>,
    /// EDNS from the OPT record, if present.
    pub edns: Option<Edns>,
}

impl Message {
    /// Authoritative answer bit.
    pub fn aa(&self) -> bool {
        self.flags & FLAG_AA != 0
    }
    /// Truncation bit.
    pub fn tc(&self) -> bool {
        self.flags & FLAG_TC != 0
    }
}

fn read_owned_name(msg: &[u8], off: usize) -> Result<(String, usize), WireError> {
    let mut s = String::new();
    let end = read_name(msg, off, &mut s)?;
    Ok((s, end))
}

/// Decodes any message.
pub fn decode(msg: &[u8]) -> Result<Message, WireError> {
    if msg.len() < HEADER_LEN {
        return Err(WireError::Short(msg.len()));
    }
    let flags = be16(msg, 2)?;
    let counts = [be16(msg, 4)?, be16(msg, 6)?, be16(msg, 8)?, be16(msg, 10)?];
    let mut off = HEADER_LEN;
    let mut questions = Vec::new();
    for _ in 0..counts[0] {
        let (name, end) = read_owned_name(msg, off)?;
        questions.push((name, be16(msg, end)?, be16(msg, end + 2)?));
        off = end + 4;
    }
    let mut sections: [Vec<Rr<'static>>; 3] = Default::default();
    let mut edns = None;
    let mut rcode = flags & 0xF;
    for (i, section) in sections.iter_mut().enumerate() {
        for _ in 0..counts[i + 1] {
            let (name, end) = read_owned_name(msg, off)?;
            let rtype = be16(msg, end)?;
            let class = be16(msg, end + 2)?;
            let ttl = be32(msg, end + 4)?;
            let rdlen = be16(msg, end + 8)? as usize;
            let rd = end + 10;
            let rdata = msg.get(rd..rd + rdlen).ok_or(WireError::Short(rd))?;
            off = rd + rdlen;
            let data = match rtype {
                TYPE_OPT => {
                    edns = Some(Edns {
                        udp_size: class,
                        version: (ttl >> 16) as u8,
                        dnssec_ok: ttl & EDNS_DO != 0,
                    });
                    rcode |= ((ttl >> 24) as u16) << 4;
                    continue;
                }
                TYPE_A if rdlen == 4 => {
                    RData::A(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]))
                }
                TYPE_AAAA if rdlen == 16 => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(rdata);
                    RData::Aaaa(Ipv6Addr::from(o))
                }
                TYPE_CNAME => RData::Cname(read_owned_name(msg, rd)?.0.into()),
                TYPE_PTR => RData::Ptr(read_owned_name(msg, rd)?.0.into()),
                TYPE_NS => RData::Ns(read_owned_name(msg, rd)?.0.into()),
                TYPE_SRV => RData::Srv {
                    priority: be16(msg, rd)?,
                    weight: be16(msg, rd + 2)?,
                    port: be16(msg, rd + 4)?,
                    target: read_owned_name(msg, rd + 6)?.0.into(),
                },
                TYPE_SOA => {
                    let (mname, e1) = read_owned_name(msg, rd)?;
                    let (rname, e2) = read_owned_name(msg, e1)?;
                    RData::Soa {
                        mname: mname.into(),
                        rname: rname.into(),
                        serial: be32(msg, e2)?,
                        refresh: be32(msg, e2 + 4)?,
                        retry: be32(msg, e2 + 8)?,
                        expire: be32(msg, e2 + 12)?,
                        minimum: be32(msg, e2 + 16)?,
                    }
                }
                t => RData::Other(t, Cow::Owned(rdata.to_vec())),
            };
            section.push(Rr {
                name: name.into(),
                ttl,
                data,
            });
        }
    }
    let [answers, authority, additional] = sections;
    Ok(Message {
        id: be16(msg, 0)?,
        flags,
        rcode,
        questions,
        answers,
        authority,
        additional,
        edns,
    })
}
