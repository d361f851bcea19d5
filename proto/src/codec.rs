//! The gRPC codec for `warren.v1`: prost encoding, but a message that does not decode
//! (garbage bytes, a wrong wire type, a truncated field) is answered with the table's
//! `INVALID_ARGUMENT` and a message that says so, instead of prost's default `INTERNAL`
//! (which would blame the server for the caller's bytes). Buffers are sized for Warren's
//! messages, most of which are a few dozen bytes ([`BUFFER_BYTES`]).

use crate::error::WarrenError;
use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// The buffer each call's encoder and decoder start with. tonic's default is 8 KiB for
/// every message both ways, allocated afresh for each call: a KeepAlive (about 50 bytes)
/// then costs two 8 KiB allocations at each end, and with a proxy's heap holding 150k
/// sessions' small blocks, glibc serves those from its sorted bins (consolidating and
/// unlinking chunks): a quarter of a proxy's and of a load generator's CPU at 50k idle
/// sessions went to malloc (docs/performance.md, "Memory per session at the proxy, and
/// 150k sessions"). 512 bytes stays in glibc's per-thread cache; a larger message grows
/// the buffer once, to its size (the encoder reserves its encoded length; the decoder the
/// length in the frame's header).
const BUFFER_BYTES: usize = 512;

/// [`BUFFER_BYTES`], with tonic's default yield threshold (streaming only; Warren has
/// none).
fn buffers() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, 32 * 1024)
}

/// Prost codec with Warren's decode-error mapping. Named by `build.rs` as the codec of
/// every generated client and server.
#[derive(Debug, Clone)]
pub struct WarrenCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for WarrenCodec<T, U> {
    fn default() -> Self {
        WarrenCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for WarrenCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = WarrenEncoder<T>;
    type Decoder = WarrenDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        WarrenEncoder { _pd: PhantomData }
    }

    fn decoder(&mut self) -> Self::Decoder {
        WarrenDecoder { _pd: PhantomData }
    }
}

/// Encodes `T` into a buffer grown once to the message's encoded length.
#[derive(Debug, Clone)]
pub struct WarrenEncoder<T> {
    _pd: PhantomData<T>,
}

impl<T: Message> Encoder for WarrenEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a message failed: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffers()
    }
}

/// Decodes `U`, mapping prost errors to `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct WarrenDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for WarrenDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            WarrenError::invalid_argument(format!(
                "the message could not be decoded as {}: {e}",
                std::any::type_name::<U>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("a warren.v1 message")
            ))
            .into()
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffers()
    }
}
