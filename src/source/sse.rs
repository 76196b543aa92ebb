//! An incremental reader of Server-Sent Events, as the RLP Gateway writes
//! them: fed the body's chunks as they come, it hands back each event's
//! data as a slice of what was read (no copy, however large the batch), and
//! tells heartbeats and the `closing` event apart. Events may be split
//! anywhere across chunks. Written here rather than taken from a crate: the
//! SSE crates copy each event's data into a `String`, and drop the legacy
//! `heartbeat:` lines the gateway once wrote.

use bytes::{Buf, Bytes, BytesMut};

/// The most bytes one event may take; beyond it the stream is refused.
pub const MAX_EVENT: usize = 64 << 20;

/// What one event said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// A `data:` event without an event name: an `EnvelopeBatch` as JSON.
    Data(Bytes),
    /// `event: heartbeat`, or a legacy `heartbeat:` line.
    Heartbeat,
    /// `event: closing`: the gateway ends the stream.
    Closing(String),
    /// An event of another name, ignored.
    Other(String),
}

/// Why a stream cannot be read as events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event of over {MAX_EVENT} bytes")]
pub struct EventTooLarge;

/// The reader's state between chunks.
#[derive(Debug, Default)]
pub struct SseReader {
    /// Bytes not yet read as lines.
    pending: BytesMut,
    /// How far `pending` is known to hold no line end.
    scanned: usize,
    /// The event being read: its name and data.
    event: Option<String>,
    data: Option<Bytes>,
    /// Bytes of the event being read so far.
    size: usize,
}

impl SseReader {
    /// Reads `chunk`, appending the events it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        self.pending.extend_from_slice(chunk);
        while let Some(found) = self.pending[self.scanned..]
            .iter()
            .position(|b| *b == b'\n')
        {
            let end = self.scanned + found;
            self.scanned = 0;
            let mut line = self.pending.split_to(end + 1).freeze();
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            self.size += end + 1;
            if self.size > MAX_EVENT {
                return Err(EventTooLarge);
            }
            self.line(line, out);
        }
        self.scanned = self.pending.len();
        if self.size + self.pending.len() > MAX_EVENT {
            return Err(EventTooLarge);
        }
        Ok(())
    }

    fn line(&mut self, line: Bytes, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let colon = line.iter().position(|b| *b == b':');
        let (field, mut value) = match colon {
            Some(i) => (line.slice(..i), line.slice(i + 1..)),
            None => (line.clone(), Bytes::new()),
        };
        if value.first() == Some(&b' ') {
            value.advance(1);
        }
        match &field[..] {
            b"data" => {
                self.data = Some(match self.data.take() {
                    None => value,
                    Some(first) => {
                        let mut joined = BytesMut::from(&first[..]);
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(&value);
                        joined.freeze()
                    }
                });
            }
            b"event" => self.event = Some(String::from_utf8_lossy(&value).into_owned()),
            // The gateway's old keepalive, a line of its own.
            b"heartbeat" => out.push(SseEvent::Heartbeat),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        self.size = 0;
        let event = self.event.take();
        let data = self.data.take();
        let Some(data) = data else {
            if event.as_deref() == Some("heartbeat") {
                out.push(SseEvent::Heartbeat);
            }
            return;
        };
        out.push(match event.as_deref() {
            None | Some("message") => SseEvent::Data(data),
            Some("heartbeat") => SseEvent::Heartbeat,
            Some("closing") => SseEvent::Closing(String::from_utf8_lossy(&data).into_owned()),
            Some(other) => SseEvent::Other(other.to_owned()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_in(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut reader = SseReader::default();
        let mut out = Vec::new();
        for piece in pieces {
            reader.feed(piece, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn events_split_anywhere_read_the_same() {
        let stream: &[u8] = b"data: {\"batch\":[1]}\n\nevent: heartbeat\ndata: 1700000000\n\n\
            heartbeat: 1700000001\n: a comment\r\ndata: {\"batch\":[2]}\r\n\r\n\
            event: closing\ndata: closing due to stream timeout\n\n";
        let expected = vec![
            SseEvent::Data(Bytes::from_static(b"{\"batch\":[1]}")),
            SseEvent::Heartbeat,
            SseEvent::Heartbeat,
            SseEvent::Data(Bytes::from_static(b"{\"batch\":[2]}")),
            SseEvent::Closing("closing due to stream timeout".into()),
        ];
        assert_eq!(read_in(&[stream]), expected);
        for at in 1..stream.len() {
            assert_eq!(
                read_in(&[&stream[..at], &stream[at..]]),
                expected,
                "split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(read_in(&bytes), expected);
    }

    #[test]
    fn data_lines_join_and_other_events_are_named() {
        assert_eq!(
            read_in(&[b"data: a\ndata: b\n\nevent: error\ndata: x\n\nevent: message\ndata:y\n\n"]),
            vec![
                SseEvent::Data(Bytes::from_static(b"a\nb")),
                SseEvent::Other("error".into()),
                SseEvent::Data(Bytes::from_static(b"y")),
            ]
        );
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut reader = SseReader::default();
        let mut out = Vec::new();
        let line = vec![b'x'; 1 << 20];
        let mut refused = false;
        for _ in 0..(MAX_EVENT >> 20) + 2 {
            if reader.feed(&line, &mut out).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
        assert!(out.is_empty());
    }
}
