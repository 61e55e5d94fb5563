//! CRI log format writer: `<RFC 3339 nanosecond UTC time> <stream> <P|F> <content>`, one
//! record per line; a line longer than the buffer is split into partial (`P`) records ending
//! with a full (`F`) one, as the kubelet expects.

use std::io::Write;

/// Longest record content before a line is split.
const MAX_LINE: usize = 16 * 1024;

/// The output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The current time in the CRI log's timestamp format.
pub fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

/// Splits one stream's bytes into CRI records, keeping an unterminated tail between reads.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
    strip_cr: bool,
}

impl LineSplitter {
    /// A splitter for `stream`.
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            pending: Vec::new(),
            strip_cr: false,
        }
    }

    /// A splitter for a terminal's output, whose lines end in `\r\n`: the `\r` is left out
    /// of the records.
    pub fn terminal(stream: Stream) -> Self {
        Self {
            strip_cr: true,
            ..Self::new(stream)
        }
    }

    /// Feeds bytes read from the stream and writes every complete record to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let mut line = &self.pending[start..start + nl];
            if self.strip_cr {
                line = line.strip_suffix(b"\r").unwrap_or(line);
            }
            for (i, chunk) in line.chunks(MAX_LINE).enumerate() {
                let last = (i + 1) * MAX_LINE >= line.len();
                write_record(out, self.stream, if last { 'F' } else { 'P' }, chunk)?;
            }
            if line.is_empty() {
                write_record(out, self.stream, 'F', b"")?;
            }
            start += nl + 1;
        }
        self.pending.drain(..start);
        while self.pending.len() >= MAX_LINE {
            let chunk: Vec<u8> = self.pending.drain(..MAX_LINE).collect();
            write_record(out, self.stream, 'P', &chunk)?;
        }
        Ok(())
    }

    /// Writes what is left when the stream ends, as a full record.
    pub fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            write_record(out, self.stream, 'F', &rest)?;
        }
        Ok(())
    }
}

fn write_record(
    out: &mut impl Write,
    stream: Stream,
    tag: char,
    content: &[u8],
) -> std::io::Result<()> {
    let mut rec = Vec::with_capacity(content.len() + 48);
    rec.extend_from_slice(timestamp().as_bytes());
    rec.push(b' ');
    rec.extend_from_slice(stream.name().as_bytes());
    rec.push(b' ');
    rec.push(tag as u8);
    rec.push(b' ');
    rec.extend_from_slice(content);
    rec.push(b'\n');
    // One write per record so that concurrent readers never see half a record.
    out.write_all(&rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(out: &[u8]) -> Vec<(String, String, String)> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().unwrap();
                assert!(ts.ends_with('Z') && ts.len() == 30, "{ts}");
                (
                    it.next().unwrap().into(),
                    it.next().unwrap().into(),
                    it.next().unwrap_or("").into(),
                )
            })
            .collect()
    }

    #[test]
    fn splits_lines_and_keeps_partial_tail() {
        let mut s = LineSplitter::new(Stream::Stdout);
        let mut out = Vec::new();
        s.feed(b"hello\nwor", &mut out).unwrap();
        s.feed(b"ld\n\ntail", &mut out).unwrap();
        s.finish(&mut out).unwrap();
        let r = records(&out);
        assert_eq!(
            r,
            vec![
                ("stdout".into(), "F".into(), "hello".into()),
                ("stdout".into(), "F".into(), "world".into()),
                ("stdout".into(), "F".into(), "".into()),
                ("stdout".into(), "F".into(), "tail".into()),
            ]
        );
    }

    #[test]
    fn terminal_line_ends_lose_their_carriage_return() {
        let mut s = LineSplitter::terminal(Stream::Stdout);
        let mut out = Vec::new();
        s.feed(b"a\r\nb\rc\r\n", &mut out).unwrap();
        let r: Vec<String> = records(&out).into_iter().map(|r| r.2).collect();
        assert_eq!(r, vec!["a".to_string(), "b\rc".to_string()]);
    }

    #[test]
    fn long_lines_become_partial_records() {
        let mut s = LineSplitter::new(Stream::Stderr);
        let mut out = Vec::new();
        let mut line = vec![b'x'; MAX_LINE + 10];
        line.push(b'\n');
        s.feed(&line, &mut out).unwrap();
        let r = records(&out);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].1, "P");
        assert_eq!(r[1].1, "F");
        assert_eq!(r[1].2.len(), 10);
    }
}
