//! The protobuf codec of every service: prost's, except that a message that does not
//! decode is the caller's fault (INVALID_ARGUMENT, naming the problem), not an internal
//! error of the server.

use std::any::TypeId;
use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

use crate::read_answer::ReadAnswer;

pub(crate) struct StrataCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for StrataCodec<T, U> {
    fn default() -> Self {
        Self {
            _messages: PhantomData,
        }
    }
}

impl<T, U> Codec for StrataCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrataDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        // Read answers stream: their buffer takes a whole write without growing.
        if TypeId::of::<T>() == TypeId::of::<ReadAnswer>() {
            return ProstEncoder::new(crate::read_answer::encode_buffer_settings());
        }
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrataDecoder(ProstDecoder::default())
    }
}

pub(crate) struct StrataDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for StrataDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            Status::invalid_argument(format!(
                "the request is not a valid {} message: {}",
                std::any::type_name::<U>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("protobuf"),
                status.message()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
