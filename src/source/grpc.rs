//! A gRPC codec for the Egress API whose streamed messages stay encoded: the
//! client sends its request as protobuf and hands each `EnvelopeBatch` it
//! receives to decoding as the bytes that arrived (a slice of the receive
//! buffer, not a copy), so that decoding runs on the ingestion task, in
//! place, like the v1 path. The simulated RLP uses it the other way round.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The method the exporter calls.
pub const BATCHED_RECEIVER: &str = "/loggregator.v2.Egress/BatchedReceiver";

/// A message as the codec sends and receives it.
pub trait GrpcMessage: Sized + Send + 'static {
    /// Writes the message.
    fn encode_to(self, dst: &mut EncodeBuf<'_>) -> Result<(), Status>;
    /// Reads a whole message.
    fn decode_from(src: &mut DecodeBuf<'_>) -> Result<Self, Status>;
}

/// A message left encoded.
impl GrpcMessage for Bytes {
    fn encode_to(self, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(self);
        Ok(())
    }

    fn decode_from(src: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        Ok(src.copy_to_bytes(src.remaining()))
    }
}

/// The subscription request, as protobuf.
impl GrpcMessage for crate::envelope::v2::proto::EgressBatchRequest {
    fn encode_to(self, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::Message::encode(&self, dst).map_err(|e| Status::internal(e.to_string()))
    }

    fn decode_from(src: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        prost::Message::decode(src).map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

/// Sends `E`, receives `D`.
#[derive(Debug)]
pub struct EgressCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for EgressCodec<E, D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<E: GrpcMessage, D: GrpcMessage> Codec for EgressCodec<E, D> {
    type Encode = E;
    type Decode = D;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self::default()
    }

    fn decoder(&mut self) -> Self {
        Self::default()
    }
}

impl<E: GrpcMessage, D> Encoder for EgressCodec<E, D> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode_to(dst)
    }
}

impl<E, D: GrpcMessage> Decoder for EgressCodec<E, D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode_from(src).map(Some)
    }
}
