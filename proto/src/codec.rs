//! The protobuf codec of every c360 service: tonic-prost's, except that a
//! message that does not decode (invalid UTF-8 in a string, a truncated
//! message, nesting past prost's recursion limit) is INVALID_ARGUMENT, the
//! sender's fault, where tonic-prost answers INTERNAL. The clients generated
//! here share the codec (tonic-prost-build takes one per build), so at a
//! client a reply that does not decode (a server bug, or versions that do not
//! match) is INVALID_ARGUMENT too; its message, "not a valid protobuf
//! message", tells it from the server's own refusals.

use tonic::{
    Code, Status,
    codec::{BufferSettings, Codec as TonicCodec, DecodeBuf, Decoder},
};
use tonic_prost::ProstCodec;

/// tonic-prost's codec with decode errors reported as INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct Codec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> TonicCodec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as TonicCodec>::Encoder;
    type Decoder = SenderFault<<ProstCodec<T, U> as TonicCodec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SenderFault(self.0.decoder())
    }
}

/// A decoder whose failures are the sender's fault.
#[derive(Debug, Clone)]
pub struct SenderFault<D>(D);

impl<D: Decoder<Error = Status>> Decoder for SenderFault<D> {
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        self.0.decode(buf).map_err(|status| match status.code() {
            // tonic-prost's only error: prost's DecodeError, whose text says
            // what was wrong (never a value).
            Code::Internal => Status::invalid_argument(format!("not a valid protobuf message: {}", status.message())),
            _ => status,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
