//! The gRPC codec for `warren.v1`: prost encoding, but a message that does not decode
//! (garbage bytes, a wrong wire type, a truncated field) is answered with the table's
//! `INVALID_ARGUMENT` and a message that says so, instead of prost's default `INTERNAL`
//! (which would blame the server for the caller's bytes).

use crate::error::WarrenError;
use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::ProstEncoder;

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
    type Encoder = ProstEncoder<T>;
    type Decoder = WarrenDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        WarrenDecoder { _pd: PhantomData }
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
}
