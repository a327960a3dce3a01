//! The protobuf codec of every service: prost's, except that a message that does not
//! decode is the caller's fault (INVALID_ARGUMENT, naming the problem), not an internal
//! error of the server; the single append's answers get small buffers, its requests one
//! that a large append does not keep reallocating, read answers one that takes a whole write.

use std::any::TypeId;
use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::proto::event_store::client::streams::{AppendReq, AppendResp};
use crate::read_answer::ReadAnswer;

/// The first buffer of an `Append` call's encoder. tonic's default (8 KiB) is meant for
/// streams of messages; an append's answer fits in far less, and a buffer this small comes
/// from the allocator's per-thread cache instead of a large allocation that consolidates the
/// heap.
const APPEND_BUFFER_BYTES: usize = 512;

/// The first buffer of an `Append` call's decoder, which holds the HTTP/2 frames of one
/// event message per event. Once decoded events hold slices of it, it cannot grow in place:
/// each growth is a new buffer of at least this size (bytes' "original capacity") with the
/// undecoded rest copied over. From 512 bytes every 16 KiB frame of a large append made it
/// grow twice, copying the frame again; from 32 KiB (twice a frame) a frame fits in the room
/// the last growth left, and a growth copies only the part of a message the frames split.
const APPEND_REQUEST_BUFFER_BYTES: usize = 32 * 1024;

/// tonic's default yield threshold: an encoder hands its bytes on once it holds this many.
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// The buffers for calls that send or receive `M`: small for `Append`'s answers, two frames
/// for its requests, one that takes a whole write without growing for read answers (a
/// stream of many messages), and tonic's defaults for the rest.
fn buffer_settings<M: 'static>() -> BufferSettings {
    let message = TypeId::of::<M>();
    if message == TypeId::of::<AppendReq>() {
        BufferSettings::new(APPEND_REQUEST_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
    } else if message == TypeId::of::<AppendResp>() {
        BufferSettings::new(APPEND_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
    } else if message == TypeId::of::<ReadAnswer>() {
        crate::read_answer::encode_buffer_settings()
    } else {
        BufferSettings::default()
    }
}

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
        ProstEncoder::new(buffer_settings::<T>())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrataDecoder {
            settings: buffer_settings::<U>(),
            _message: PhantomData,
        }
    }
}

pub(crate) struct StrataDecoder<U> {
    settings: BufferSettings,
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for StrataDecoder<U> {
    type Item = U;
    type Error = Status;

    /// Takes the message's bytes out of tonic's buffer as one `Bytes` (no copy) and decodes
    /// from that: every `bytes` field is then a slice of it, and the decoder reads a plain
    /// contiguous buffer instead of going through tonic's `DecodeBuf` for each field.
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let message = buf.copy_to_bytes(buf.remaining());
        U::decode(message).map(Some).map_err(|error| {
            Status::invalid_argument(format!(
                "the request is not a valid {} message: {error}",
                std::any::type_name::<U>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("protobuf"),
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::event_store::client::streams::ReadResp;

    #[test]
    fn the_append_messages_get_their_own_buffers() {
        let small = format!(
            "{:?}",
            BufferSettings::new(APPEND_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
        );
        let request = format!(
            "{:?}",
            BufferSettings::new(APPEND_REQUEST_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
        );
        assert_eq!(format!("{:?}", buffer_settings::<AppendReq>()), request);
        assert_eq!(format!("{:?}", buffer_settings::<AppendResp>()), small);
        assert_eq!(
            format!("{:?}", buffer_settings::<ReadResp>()),
            format!("{:?}", BufferSettings::default())
        );
    }
}
