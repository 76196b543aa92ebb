//! Faults the simulated foundation injects on command: every way the real
//! platform has been seen to cut, stall or confuse a Firehose consumer.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use super::Foundation;
use super::traffic_controller::{FrameKind, KEEPALIVE_REASON};
use super::uaa::UaaMode;
use crate::envelope::{CounterEvent, Envelope};

/// Size of the frame [`Fault::Oversized`] sends: twice the exporter's default limit.
pub const OVERSIZED_FRAME: usize = 8 << 20;

/// Delay of [`Fault::UaaSlow`] when given by name: longer than the
/// exporter's default `--uaa.timeout` of 10 s.
pub const UAA_SLOW_DELAY: Duration = Duration::from_secs(15);

/// One fault. Those that change how a server answers (`Unavailable` and the
/// UAA ones) last until [`Foundation::heal`]; they also cut the stream so
/// that the consumer meets them on its next connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close 1000 with an empty reason: how the Traffic Controller cuts a slow consumer.
    CloseNormal,
    /// Close 1008 with the keepalive reason.
    ClosePolicy,
    /// TCP reset without a close frame (a load balancer or router restart).
    Reset,
    /// The connection stays open and silent: no frames, no pings.
    Hang,
    /// Tokens are revoked and the stream cut: the next handshake gets 401
    /// until a new token is used.
    RevokeTokens,
    /// Handshakes are answered 503 before the upgrade (Dopplers unreachable).
    Unavailable,
    /// UAA resets every connection.
    UaaDown,
    /// UAA answers HTTP 500.
    UaaError,
    /// UAA answers 401 `Bad credentials`.
    UaaBadCredentials,
    /// UAA answers after a delay.
    UaaSlow(Duration),
    /// Frames that are not valid envelopes.
    Garbage,
    /// A frame larger than the exporter accepts.
    Oversized,
    /// The legacy in-band counter `TruncatingBuffer.DroppedMessages` from `doppler`.
    DroppedMessages,
}

impl Fault {
    /// Every fault, by the name `simulate --sim.faults` takes.
    pub const ALL: [(&'static str, Fault); 13] = [
        ("close-1000", Fault::CloseNormal),
        ("close-1008", Fault::ClosePolicy),
        ("reset", Fault::Reset),
        ("hang", Fault::Hang),
        ("revoke-tokens", Fault::RevokeTokens),
        ("unavailable", Fault::Unavailable),
        ("uaa-down", Fault::UaaDown),
        ("uaa-500", Fault::UaaError),
        ("uaa-401", Fault::UaaBadCredentials),
        ("uaa-slow", Fault::UaaSlow(UAA_SLOW_DELAY)),
        ("garbage", Fault::Garbage),
        ("oversized", Fault::Oversized),
        ("dropped-messages", Fault::DroppedMessages),
    ];

    /// The name of this kind of fault.
    pub fn name(&self) -> &'static str {
        let kind = std::mem::discriminant(self);
        Self::ALL
            .iter()
            .find(|(_, f)| std::mem::discriminant(f) == kind)
            .map_or("unknown", |(name, _)| name)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, fault)| *fault)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|(n, _)| *n).collect();
                format!("{s:?} is not one of {}", names.join(", "))
            })
    }
}

/// Frames that fail decoding in different ways: not protobuf, truncated,
/// a field of the wrong wire type, an unknown event type, a missing payload.
pub fn garbage_frames() -> Vec<Bytes> {
    let unknown_type = Envelope {
        origin: "sim".into(),
        event_type: 42,
        ..Default::default()
    };
    let no_payload = Envelope {
        origin: "sim".into(),
        event_type: 6,
        ..Default::default()
    };
    vec![
        Bytes::from_static(&[0xff; 16]),
        Bytes::from_static(&[0x0a, 0x20, b'r', b'e', b'p']),
        Bytes::from_static(&[0x0d, 0x01, 0x02, 0x03, 0x04, 0x10]),
        Bytes::from(unknown_type.encode_to_vec()),
        Bytes::from(no_payload.encode_to_vec()),
    ]
}

/// The counter Dopplers before 2017 injected into a stream they dropped from.
pub fn dropped_messages_envelope(total: u64) -> Envelope {
    Envelope {
        origin: "doppler".into(),
        event_type: 7,
        counter_event: Some(CounterEvent {
            name: "TruncatingBuffer.DroppedMessages".into(),
            delta: 100,
            total: Some(total),
        }),
        deployment: Some("cf".into()),
        job: Some("doppler".into()),
        ..Default::default()
    }
}

impl Foundation {
    /// Injects `fault` now.
    pub async fn inject(&self, fault: Fault) {
        let tc = &self.traffic_controller;
        let cut = || tc.close_all(1000, "");
        // The RLP meets the faults it has a form of.
        match fault {
            Fault::CloseNormal => self.rlp.end_all(),
            Fault::Reset | Fault::ClosePolicy | Fault::Hang => self.rlp.reset_all(),
            Fault::Unavailable => {
                self.rlp.set_refusal(Some(tonic::Code::Unavailable));
                self.rlp.reset_all();
            }
            _ => {}
        }
        match fault {
            Fault::CloseNormal => cut(),
            Fault::ClosePolicy => tc.close_all(1008, KEEPALIVE_REASON),
            Fault::Reset => tc.reset_all(),
            Fault::Hang => tc.hang_all(),
            Fault::RevokeTokens => {
                self.uaa.revoke_all();
                cut();
            }
            Fault::Unavailable => {
                tc.set_unavailable(true);
                cut();
            }
            Fault::UaaDown | Fault::UaaError | Fault::UaaBadCredentials | Fault::UaaSlow(_) => {
                self.uaa.set_mode(match fault {
                    Fault::UaaDown => UaaMode::Down,
                    Fault::UaaError => UaaMode::ServerError,
                    Fault::UaaBadCredentials => UaaMode::BadCredentials,
                    Fault::UaaSlow(delay) => UaaMode::Slow(delay),
                    _ => unreachable!("matched above"),
                });
                // The consumer needs a new token to meet the fault.
                self.uaa.revoke_all();
                cut();
            }
            Fault::Garbage => {
                for frame in garbage_frames() {
                    tc.publish(frame, FrameKind::Metric).await;
                }
            }
            Fault::Oversized => {
                tc.publish(Bytes::from(vec![0u8; OVERSIZED_FRAME]), FrameKind::Metric)
                    .await;
            }
            Fault::DroppedMessages => {
                let total = 100 * (tc.published() + 1);
                let envelope = dropped_messages_envelope(total);
                tc.publish(Bytes::from(envelope.encode_to_vec()), FrameKind::Metric)
                    .await;
            }
        }
    }

    /// Ends the lasting faults: UAA answers normally, handshakes are accepted.
    pub fn heal(&self) {
        self.uaa.set_mode(UaaMode::Normal);
        self.traffic_controller.set_unavailable(false);
        self.rlp.set_refusal(None);
    }
}

/// Injects `faults` in turn, one every `interval`, each lasting faults
/// healed after `duration`; runs until dropped.
pub async fn run_schedule(
    foundation: &Foundation,
    faults: &[Fault],
    interval: Duration,
    duration: Duration,
) {
    if faults.is_empty() {
        return;
    }
    for fault in faults.iter().cycle() {
        tokio::time::sleep(interval).await;
        tracing::info!(fault = %fault, "simulated foundation: injecting a fault");
        foundation.inject(*fault).await;
        if matches!(
            fault,
            Fault::Unavailable
                | Fault::UaaDown
                | Fault::UaaError
                | Fault::UaaBadCredentials
                | Fault::UaaSlow(_)
        ) {
            tokio::time::sleep(duration.min(interval)).await;
            foundation.heal();
            tracing::info!(fault = %fault, "simulated foundation: fault over");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope;

    #[test]
    fn names_round_trip_and_unknown_names_are_listed() {
        for (name, fault) in Fault::ALL {
            assert_eq!(name.parse::<Fault>(), Ok(fault));
            assert_eq!(fault.to_string(), name);
        }
        let err = "meteor".parse::<Fault>().unwrap_err();
        assert!(
            err.starts_with("\"meteor\" is not one of close-1000, "),
            "{err}"
        );
    }

    #[test]
    fn garbage_frames_are_all_rejected() {
        for frame in garbage_frames() {
            assert!(envelope::decode(&frame).is_err(), "{frame:?}");
        }
    }
}
