//! Container logs: the CRI log format (`<RFC3339Nano time> <stdout|stderr> <P|F> <content>`),
//! the options of `kubectl logs` (tail, since, timestamps, limitBytes, follow), and a reader
//! that turns a log file into the bytes the client sees.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::{StreamingBackend, StreamingError};

/// How often a followed log file is checked for new lines. Polling keeps this portable and
/// free of inotify limits; the delay is below what a person watching `logs -f` notices.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Options of a log request (upstream's `PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep streaming new lines.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Only lines at or after this time (from `sinceSeconds` or `sinceTime`).
    pub since: Option<DateTime<Utc>>,
    /// Prefix each line with its RFC3339Nano timestamp.
    pub timestamps: bool,
    /// The previous (terminated) instance of the container.
    pub previous: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Parse query parameters; `now` anchors `sinceSeconds`.
    pub fn from_query(query: &[(String, String)], now: DateTime<Utc>) -> Result<Self, StreamingError> {
        let mut o = LogOptions::default();
        let flag = |v: &str| matches!(v, "true" | "1");
        let num = |k: &str, v: &str| {
            v.parse::<i64>().map_err(|_| StreamingError::BadRequest(format!("{k}: {v:?} is not an integer")))
        };
        for (k, v) in query {
            match k.as_str() {
                "follow" => o.follow = flag(v),
                "timestamps" => o.timestamps = flag(v),
                "previous" => o.previous = flag(v),
                "tailLines" => {
                    let n = num(k, v)?;
                    // Upstream treats a negative tail as "everything".
                    o.tail_lines = (n >= 0).then_some(n as u64);
                }
                "limitBytes" => {
                    let n = num(k, v)?;
                    if n < 1 {
                        return Err(StreamingError::BadRequest("limitBytes must be greater than zero".into()));
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n = num(k, v)?;
                    if n < 1 {
                        return Err(StreamingError::BadRequest("sinceSeconds must be greater than zero".into()));
                    }
                    o.since = Some(now - chrono::Duration::seconds(n));
                }
                "sinceTime" => {
                    let t = DateTime::parse_from_rfc3339(v)
                        .map_err(|e| StreamingError::BadRequest(format!("sinceTime {v:?}: {e}")))?;
                    o.since = Some(t.with_timezone(&Utc));
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLine<'a> {
    /// Timestamp as written (RFC3339Nano).
    pub timestamp: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// A partial line, continued by the next one (`P`), or the end of a line (`F`).
    pub partial: bool,
    /// The text, without the trailing newline.
    pub content: &'a [u8],
}

/// Parse one line (without its `\n`).
pub fn parse_cri_line(line: &[u8]) -> Option<CriLine<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let tag = parts.next()?;
    // The tag field may carry more flags after ':' in future CRI versions; P is what matters.
    let partial = tag.split(|b| *b == b':').next()? == b"P";
    let content = parts.next().unwrap_or(b"");
    Some(CriLine { timestamp, stream, partial, content })
}

/// A complete log entry: partial lines merged, newline restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Timestamp of its first piece.
    pub timestamp: String,
    /// Parsed timestamp, for `since` filtering.
    pub time: Option<DateTime<Utc>>,
    /// Text including the final `\n`.
    pub content: Vec<u8>,
}

impl Entry {
    /// The bytes sent to the client.
    pub fn render(&self, timestamps: bool) -> Vec<u8> {
        if !timestamps {
            return self.content.clone();
        }
        let mut out = Vec::with_capacity(self.timestamp.len() + 1 + self.content.len());
        out.extend_from_slice(self.timestamp.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.content);
        out
    }
}

/// Merges CRI lines into entries; partial pieces wait for their final piece, per stream so
/// that interleaved stdout and stderr do not splice into each other.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<(String, Entry)>,
}

impl Decoder {
    /// Feed one raw line; returns the entry it completes, if any. Unparseable lines are
    /// passed through as text so nothing is silently lost.
    pub fn push(&mut self, line: &[u8]) -> Option<Entry> {
        let Some(l) = parse_cri_line(line) else {
            let mut content = line.to_vec();
            content.push(b'\n');
            return Some(Entry { timestamp: String::new(), time: None, content });
        };
        let idx = self.pending.iter().position(|(s, _)| s == l.stream);
        let mut entry = match idx {
            Some(i) => self.pending.remove(i).1,
            None => Entry {
                timestamp: l.timestamp.to_string(),
                time: DateTime::parse_from_rfc3339(l.timestamp).ok().map(|t| t.with_timezone(&Utc)),
                content: Vec::new(),
            },
        };
        entry.content.extend_from_slice(l.content);
        if l.partial {
            self.pending.push((l.stream.to_string(), entry));
            return None;
        }
        entry.content.push(b'\n');
        Some(entry)
    }
}

/// Applies `since`, `limitBytes` and `timestamps` to entries as they are produced.
#[derive(Debug)]
pub struct Filter {
    opts: LogOptions,
    sent: u64,
}

impl Filter {
    /// A filter for `opts`.
    pub fn new(opts: LogOptions) -> Self {
        Self { opts, sent: 0 }
    }

    /// Bytes to send for `e` (empty if filtered out).
    pub fn render(&mut self, e: &Entry) -> Vec<u8> {
        if let (Some(since), Some(t)) = (self.opts.since, e.time) {
            if t < since {
                return Vec::new();
            }
        }
        let mut out = e.render(self.opts.timestamps);
        if let Some(limit) = self.opts.limit_bytes {
            let left = limit.saturating_sub(self.sent) as usize;
            out.truncate(left);
        }
        self.sent += out.len() as u64;
        out
    }

    /// The byte limit has been reached.
    pub fn exhausted(&self) -> bool {
        self.opts.limit_bytes.is_some_and(|l| self.sent >= l)
    }
}

/// Render the complete lines of `data` (a whole log file) with `opts`, honouring `tailLines`.
/// Returns the output and how many bytes of `data` were consumed (an unfinished last line is
/// left for a follower to pick up).
pub fn render_initial(data: &[u8], decoder: &mut Decoder, filter: &mut Filter, tail: Option<u64>) -> (Vec<u8>, usize) {
    let consumed = data.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    let mut entries: Vec<Entry> = data[..consumed].split(|b| *b == b'\n').filter(|l| !l.is_empty()).filter_map(|l| decoder.push(l)).collect();
    if let Some(n) = tail {
        let skip = entries.len().saturating_sub(n as usize);
        entries.drain(..skip);
    }
    let mut out = Vec::new();
    for e in &entries {
        out.extend(filter.render(e));
        if filter.exhausted() {
            break;
        }
    }
    (out, consumed)
}

/// Stream a container's log to `tx` until done (or, with `follow`, until the container stops
/// or the client goes away).
pub async fn stream_log(
    backend: Arc<dyn StreamingBackend>,
    path: PathBuf,
    ids: (String, String, String),
    opts: LogOptions,
    tx: mpsc::Sender<Bytes>,
) -> Result<(), StreamingError> {
    let mut file = open(&path).await?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).await.map_err(StreamingError::io(format!("reading {}", path.display())))?;
    let mut decoder = Decoder::default();
    let mut filter = Filter::new(opts.clone());
    let (out, consumed) = render_initial(&data, &mut decoder, &mut filter, opts.tail_lines);
    if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
        return Ok(());
    }
    if !opts.follow || filter.exhausted() {
        return Ok(());
    }
    let mut offset = consumed as u64;
    let mut partial: Vec<u8> = data[consumed..].to_vec();
    let mut buf = vec![0u8; 64 * 1024];
    file.seek(std::io::SeekFrom::Start(offset + partial.len() as u64))
        .await
        .map_err(StreamingError::io(format!("seeking {}", path.display())))?;
    loop {
        let n = file.read(&mut buf).await.map_err(StreamingError::io(format!("reading {}", path.display())))?;
        if n == 0 {
            if tx.is_closed() {
                return Ok(());
            }
            let (ns, pod, container) = (&ids.0, &ids.1, &ids.2);
            if !backend.container_running(ns, pod, container).await {
                // One last read so lines written just before the exit are not lost.
                let n = file.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return Ok(());
                }
                partial.extend_from_slice(&buf[..n]);
            } else if rotated(&file, &path).await {
                // The old file is complete once the new one exists: read its rest, go on
                // in the new one from its start.
                loop {
                    let n = file.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    partial.extend_from_slice(&buf[..n]);
                }
                file = open(&path).await?;
                offset = 0;
            } else {
                tokio::time::sleep(FOLLOW_POLL).await;
                continue;
            }
        } else {
            partial.extend_from_slice(&buf[..n]);
        }
        let Some(end) = partial.iter().rposition(|b| *b == b'\n') else { continue };
        let mut out = Vec::new();
        for line in partial[..end].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(e) = decoder.push(line) {
                out.extend(filter.render(&e));
            }
        }
        offset += end as u64 + 1;
        partial.drain(..=end);
        if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
            return Ok(());
        }
        if filter.exhausted() {
            return Ok(());
        }
        tracing::trace!(offset, "log follow");
    }
}

/// Whether the log at `path` is a different file from `file` now: rotation renamed `file` away
/// and the shim reopened the path. (While the path is missing the shim has not reopened yet
/// and may still append to `file`.)
async fn rotated(file: &tokio::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata().await, tokio::fs::metadata(path).await) {
        (Ok(old), Ok(new)) => (old.dev(), old.ino()) != (new.dev(), new.ino()),
        _ => false,
    }
}

async fn open(path: &Path) -> Result<tokio::fs::File, StreamingError> {
    tokio::fs::File::open(path).await.map_err(StreamingError::io(format!("opening log file {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2016-10-06T00:17:09.669794202Z stdout F one\n\
2016-10-06T00:17:10.113242941Z stderr F two\n\
2016-10-06T00:17:11.000000000Z stdout P thr\n\
2016-10-06T00:17:11.500000000Z stderr F err-between\n\
2016-10-06T00:17:12.000000000Z stdout F ee\n\
2016-10-06T00:17:13.000000000Z stdout F \n\
2016-10-06T00:17:14.000000000Z stdout F unfinished";

    fn render(opts: LogOptions) -> String {
        let mut d = Decoder::default();
        let tail = opts.tail_lines;
        let mut f = Filter::new(opts);
        String::from_utf8(render_initial(LOG, &mut d, &mut f, tail).0).unwrap()
    }

    #[test]
    fn cri_lines_parse() {
        let l = parse_cri_line(b"2016-10-06T00:17:09.669794202Z stdout F hello world").unwrap();
        assert_eq!((l.timestamp, l.stream, l.partial, l.content), ("2016-10-06T00:17:09.669794202Z", "stdout", false, &b"hello world"[..]));
        assert!(parse_cri_line(b"2016-10-06T00:17:09Z stdout P x").unwrap().partial);
        assert_eq!(parse_cri_line(b"2016-10-06T00:17:09Z stdout F").unwrap().content, b"");
        assert!(parse_cri_line(b"garbage").is_none());
        assert!(parse_cri_line(b"2016 stdin F x").is_none());
    }

    #[test]
    fn partial_lines_merge_per_stream_and_unfinished_tail_waits() {
        assert_eq!(render(LogOptions::default()), "one\ntwo\nerr-between\nthree\n\n");
    }

    #[test]
    fn tail_timestamps_since_and_limit() {
        assert_eq!(render(LogOptions { tail_lines: Some(2), ..Default::default() }), "three\n\n");
        assert_eq!(render(LogOptions { tail_lines: Some(0), ..Default::default() }), "");
        let ts = render(LogOptions { timestamps: true, tail_lines: Some(3), ..Default::default() });
        assert_eq!(ts, "2016-10-06T00:17:11.500000000Z err-between\n2016-10-06T00:17:11.000000000Z three\n2016-10-06T00:17:13.000000000Z \n");
        let since = DateTime::parse_from_rfc3339("2016-10-06T00:17:10.5Z").unwrap().with_timezone(&Utc);
        assert_eq!(render(LogOptions { since: Some(since), ..Default::default() }), "err-between\nthree\n\n");
        assert_eq!(render(LogOptions { limit_bytes: Some(6), ..Default::default() }), "one\ntw");
    }

    #[test]
    fn options_from_query() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:01:00Z").unwrap().with_timezone(&Utc);
        let q = |s: &[(&str, &str)]| s.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let o = LogOptions::from_query(&q(&[("follow", "true"), ("tailLines", "10"), ("sinceSeconds", "60"), ("timestamps", "true"), ("limitBytes", "5")]), now).unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(10), Some(5)));
        assert_eq!(o.since.unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");
        let o = LogOptions::from_query(&q(&[("sinceTime", "2023-12-31T23:59:59Z"), ("tailLines", "-1")]), now).unwrap();
        assert_eq!(o.tail_lines, None);
        assert_eq!(o.since.unwrap().timestamp(), now.timestamp() - 61);
        assert!(LogOptions::from_query(&q(&[("tailLines", "x")]), now).is_err());
        assert!(LogOptions::from_query(&q(&[("limitBytes", "0")]), now).is_err());
        assert!(LogOptions::from_query(&q(&[("sinceTime", "yesterday")]), now).is_err());
    }
}
