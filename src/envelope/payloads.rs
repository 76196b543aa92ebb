//! The HTTP, log and error events of a v1 envelope read in place: the
//! fields their series need, borrowed from the frame, and nothing that
//! names a request (URI, addresses, agent, request id, forwarded chain) or
//! carries a log's text.

use super::borrowed::utf8;
use super::v2::scan::{Field, bytes, fields, varint};
use super::{DecodeError, Payload, events};

/// The stream a log line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

impl LogType {
    /// Its name, as dropsonde spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogType::Out => "OUT",
            LogType::Err => "ERR",
        }
    }
}

/// Which side of a request reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The client (gorouter towards the app, say).
    Client,
    /// The server (gorouter towards the user).
    Server,
    /// Not said.
    Unknown,
}

/// The instance an HTTP event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance<'a> {
    /// Not named.
    None,
    /// An instance index (v1).
    Index(i32),
    /// An instance id as text (v2).
    Text(&'a str),
}

/// An HTTP request: what its series read, nothing that names the request
/// itself (URI, addresses, agent, request id).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Http<'a> {
    /// Which side reported it.
    pub peer: Peer,
    /// The method's name (`GET`), empty when unknown.
    pub method: &'a str,
    /// The response's status code, 0 when unknown.
    pub status_code: i32,
    /// Its duration in nanoseconds (stop minus start).
    pub duration_ns: i64,
    /// The response's size in bytes, when known.
    pub content_length: Option<u64>,
    /// The app's GUID (v1), as its 16 bytes.
    pub application_id: Option<[u8; 16]>,
    /// The app instance.
    pub instance: Instance<'a>,
}

impl Http<'_> {
    /// Whether the event is a request to count: not the client side of
    /// one (a router reports both sides of each request; the server's is
    /// counted), and a request at all (Diego's `spike` timer reaches v1 as
    /// an HttpStartStop without method or status).
    pub fn counted(&self) -> bool {
        self.peer != Peer::Client && !(self.method.is_empty() && self.status_code == 0)
    }

    /// The duration in seconds (0 for a stop before the start).
    pub fn duration_seconds(&self) -> f64 {
        self.duration_ns.max(0) as f64 / 1e9
    }
}

/// A UUID's 16 bytes as text, `f47ac10b-58cc-4372-a567-0e02b2c3d479`.
pub fn uuid_text(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// An `HttpStartStop`. A missing required field reads as its default, as
/// prost would give it.
pub(super) fn http(encoded: &[u8]) -> Result<Http<'_>, DecodeError> {
    let mut http = Http {
        peer: Peer::Unknown,
        method: "",
        status_code: 0,
        duration_ns: 0,
        content_length: None,
        application_id: None,
        instance: Instance::None,
    };
    let (mut start, mut stop) = (0i64, 0i64);
    fields(encoded, |number, field| {
        match number {
            1 => start = varint(field)? as i64,
            2 => stop = varint(field)? as i64,
            4 => {
                http.peer = match varint(field)? {
                    1 => Peer::Client,
                    2 => Peer::Server,
                    _ => Peer::Unknown,
                }
            }
            5 => {
                http.method = i32::try_from(varint(field)?)
                    .ok()
                    .and_then(|m| events::Method::try_from(m).ok())
                    .map_or("", |m| m.as_str_name())
            }
            9 => http.status_code = varint(field)? as i32,
            10 => http.content_length = u64::try_from(varint(field)? as i64).ok(),
            12 => http.application_id = Some(uuid(bytes(field)?)?),
            13 => http.instance = Instance::Index(varint(field)? as i32),
            _ => {}
        }
        Ok(())
    })?;
    http.duration_ns = stop.saturating_sub(start);
    Ok(http)
}

/// A dropsonde `UUID`'s 16 bytes, in the order of its text form.
fn uuid(encoded: &[u8]) -> Result<[u8; 16], DecodeError> {
    let (mut low, mut high) = (0u64, 0u64);
    fields(encoded, |number, field| {
        match number {
            1 => low = varint(field)?,
            2 => high = varint(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(events::Uuid { low, high }.to_bytes())
}

/// The packing of protocol.md §1.9: the 16 bytes in the order of the text
/// form, `low` the first eight read little-endian, `high` the last eight.
impl events::Uuid {
    /// The 16 bytes.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.low.to_le_bytes());
        out[8..].copy_from_slice(&self.high.to_le_bytes());
        out
    }

    /// The UUID of these 16 bytes.
    pub fn from_bytes(bytes: &[u8; 16]) -> Self {
        let (low, high) = bytes.split_at(8);
        Self {
            low: u64::from_le_bytes(low.try_into().unwrap_or_default()),
            high: u64::from_le_bytes(high.try_into().unwrap_or_default()),
        }
    }
}

/// A `LogMessage`: its length and stream, the app and the source type.
pub(super) fn log(encoded: &[u8]) -> Result<Payload<'_>, DecodeError> {
    let (mut len, mut message_type, mut app_id, mut source_type) = (0, LogType::Out, "", "");
    fields(encoded, |number, field| {
        match number {
            1 => len = bytes(field)?.len() as u64,
            2 => {
                // OUT = 1, ERR = 2; anything else reads as ERR, as Doppler's
                // conversion treats any v2 type but OUT.
                message_type = if varint(field)? == 1 {
                    LogType::Out
                } else {
                    LogType::Err
                }
            }
            4 => app_id = utf8(bytes(field)?, "logMessage.app_id")?,
            5 => source_type = utf8(bytes(field)?, "logMessage.source_type")?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(Payload::Log {
        message_type,
        bytes: len,
        app_id,
        source_type,
    })
}

/// An `Error`: its source and code (not its message).
pub(super) fn error(encoded: &[u8]) -> Result<Payload<'_>, DecodeError> {
    let (mut source, mut code) = ("", 0);
    fields(encoded, |number, field: Field<'_>| {
        match number {
            1 => source = utf8(bytes(field)?, "error.source")?,
            2 => code = varint(field)? as i32,
            _ => {}
        }
        Ok(())
    })?;
    Ok(Payload::Error { source, code })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn an_http_event_reads_its_counted_fields_and_nothing_of_the_request() {
        let event = events::HttpStartStop {
            start_timestamp: 1_000,
            stop_timestamp: 251_001_000,
            request_id: events::Uuid { low: 1, high: 2 },
            peer_type: events::PeerType::Server as i32,
            method: events::Method::Post as i32,
            uri: "https://app.example.com/secret?token=x".into(),
            remote_address: "10.0.0.1:4000".into(),
            user_agent: "curl".into(),
            status_code: 503,
            content_length: 1234,
            application_id: Some(events::Uuid {
                low: 0x7243cc580bc17af4,
                high: 0x79d4c3b2020e67a5,
            }),
            instance_index: Some(3),
            instance_id: None,
            forwarded: vec!["203.0.113.7".into()],
        };
        let encoded = event.encode_to_vec();
        let http = http(&encoded).unwrap();
        assert_eq!(http.peer, Peer::Server);
        assert_eq!(http.method, "POST");
        assert_eq!(http.status_code, 503);
        assert_eq!(http.duration_ns, 251_000_000);
        assert_eq!(http.content_length, Some(1234));
        assert_eq!(http.instance, Instance::Index(3));
        assert_eq!(
            crate::envelope::uuid_text(&http.application_id.unwrap()),
            "f47ac10b-58cc-4372-a567-0e02b2c3d479"
        );
        assert!(http.counted());
        assert_eq!(http.duration_seconds(), 0.251);
    }

    #[test]
    fn the_client_side_and_timers_that_are_not_requests_are_not_counted() {
        let client = events::HttpStartStop {
            peer_type: events::PeerType::Client as i32,
            method: 1,
            status_code: 200,
            ..Default::default()
        };
        assert!(!http(&client.encode_to_vec()).unwrap().counted());
        // Diego's spike timer, converted to v1: no method, no status.
        let spike = events::HttpStartStop {
            start_timestamp: 1,
            stop_timestamp: 2,
            ..Default::default()
        };
        assert!(!http(&spike.encode_to_vec()).unwrap().counted());
    }

    #[test]
    fn a_log_reads_its_length_and_stream_and_an_error_its_source_and_code() {
        let line = events::LogMessage {
            message: b"hello\n".to_vec(),
            message_type: 2,
            timestamp: 1,
            app_id: Some("guid".into()),
            source_type: Some("APP/PROC/WEB".into()),
            source_instance: Some("0".into()),
        };
        assert_eq!(
            log(&line.encode_to_vec()).unwrap(),
            Payload::Log {
                message_type: LogType::Err,
                bytes: 6,
                app_id: "guid",
                source_type: "APP/PROC/WEB",
            }
        );
        let e = events::Error {
            source: "doppler".into(),
            code: 42,
            message: "lost".into(),
        };
        assert_eq!(
            error(&e.encode_to_vec()).unwrap(),
            Payload::Error {
                source: "doppler",
                code: 42
            }
        );
    }
}
