//! The `etcdserverpb.Watch` gRPC service, written out instead of generated so that its
//! responses can be [`WatchReply`]s: a `WatchResponse` whose events are encoded straight from
//! the batch the hub shares between watchers.
//!
//! One revision published to 10,000 watchers used to be copied 10,000 times (each copy
//! allocated, encoded and freed); now each watcher's response is encoded from the shared events,
//! so the only per-watcher cost is writing its bytes. On the wire a `WatchReply` is exactly the
//! `WatchResponse` it stands for (fields in field-number order, `events` last), so clients see
//! no difference.

use std::sync::Arc;
use std::task::{Context, Poll};

use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};
use raftstore::watch::SharedEvents;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, EnabledCompressionEncodings, Service, StdError};
use tonic::server::{NamedService, StreamingService};
use tonic::{Response, Status, Streaming};
use tonic_prost::ProstDecoder;

use crate::pb::etcdserverpb::{WatchRequest, WatchResponse};
use crate::pb::mvccpb::Event;
use crate::watch::{WatchReplies, WatchService};

/// The field number of `WatchResponse.events`, its last field.
const EVENTS_FIELD: u32 = 11;

/// The encode buffer gRPC starts each write with (tonic's default is 8 KiB, grown by doubling).
const ENCODE_BUFFER_BYTES: usize = 64 * 1024;
/// Encoded bytes after which gRPC hands a write to HTTP/2 (tonic's default).
const ENCODE_YIELD_BYTES: usize = 32 * 1024;

/// A `WatchResponse` as sent: whole, or without its events plus the shared events.
#[derive(Debug, Clone)]
pub enum WatchReply {
    Whole(WatchResponse),
    Shared {
        /// Every field but `events`, which must be empty.
        response: WatchResponse,
        events: SharedEvents,
    },
}

impl Default for WatchReply {
    fn default() -> Self {
        WatchReply::Whole(WatchResponse::default())
    }
}

/// The encoded length of `event`'s fields, leaving out `prev_kv` unless `with_prev_kv`.
fn event_body_len(event: &Event, with_prev_kv: bool) -> usize {
    let r#type = if event.r#type != 0 {
        encoding::int32::encoded_len(1, &event.r#type)
    } else {
        0
    };
    let kv = event
        .kv
        .as_ref()
        .map_or(0, |kv| encoding::message::encoded_len(2, kv));
    let prev_kv = match &event.prev_kv {
        Some(prev) if with_prev_kv => encoding::message::encoded_len(3, prev),
        _ => 0,
    };
    r#type + kv + prev_kv
}

impl Message for WatchReply {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        match self {
            WatchReply::Whole(response) => response.encode_raw(buf),
            WatchReply::Shared { response, events } => {
                // Fields 1..=7 first, then each event as one field 11, as prost orders them.
                response.encode_raw(buf);
                let with_prev_kv = events.with_prev_kv();
                for event in events.iter() {
                    encoding::encode_key(EVENTS_FIELD, WireType::LengthDelimited, buf);
                    encoding::encode_varint(event_body_len(event, with_prev_kv) as u64, buf);
                    if event.r#type != 0 {
                        encoding::int32::encode(1, &event.r#type, buf);
                    }
                    if let Some(kv) = &event.kv {
                        encoding::message::encode(2, kv, buf);
                    }
                    match &event.prev_kv {
                        Some(prev) if with_prev_kv => encoding::message::encode(3, prev, buf),
                        _ => {}
                    }
                }
            }
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Only ever sent by this server, never received: decoding skips every field.
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        match self {
            WatchReply::Whole(response) => response.encoded_len(),
            WatchReply::Shared { response, events } => {
                let with_prev_kv = events.with_prev_kv();
                let events_len: usize = events
                    .iter()
                    .map(|event| {
                        let len = event_body_len(event, with_prev_kv);
                        encoding::key_len(EVENTS_FIELD)
                            + encoding::encoded_len_varint(len as u64)
                            + len
                    })
                    .sum();
                response.encoded_len() + events_len
            }
        }
    }

    fn clear(&mut self) {
        *self = WatchReply::default();
    }
}

/// Decodes requests with prost; encodes replies into room reserved for their exact size, so
/// a large catch-up reply is not grown (and copied) step by step.
#[derive(Debug, Clone, Copy, Default)]
struct WatchCodec;

impl Codec for WatchCodec {
    type Encode = WatchReply;
    type Decode = WatchRequest;
    type Encoder = WatchEncoder;
    type Decoder = ProstDecoder<WatchRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        WatchEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct WatchEncoder;

impl Encoder for WatchEncoder {
    type Item = WatchReply;
    type Error = Status;

    fn encode(&mut self, item: WatchReply, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode_raw(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(ENCODE_BUFFER_BYTES, ENCODE_YIELD_BYTES)
    }
}

/// The Watch service as a tower service, in place of the generated `WatchServer`.
#[derive(Clone)]
pub struct WatchServer {
    inner: Arc<WatchService>,
    max_decoding_message_size: Option<usize>,
    max_encoding_message_size: Option<usize>,
}

impl WatchServer {
    pub fn new(service: WatchService) -> Self {
        Self {
            inner: Arc::new(service),
            max_decoding_message_size: None,
            max_encoding_message_size: None,
        }
    }

    /// Limits the size of a decoded request.
    #[must_use]
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.max_decoding_message_size = Some(limit);
        self
    }

    /// Limits the size of an encoded response.
    #[must_use]
    pub fn max_encoding_message_size(mut self, limit: usize) -> Self {
        self.max_encoding_message_size = Some(limit);
        self
    }
}

impl NamedService for WatchServer {
    const NAME: &'static str = "etcdserverpb.Watch";
}

/// The one method, `Watch`, as tonic's server runs a streaming method.
struct WatchMethod(Arc<WatchService>);

impl StreamingService<WatchRequest> for WatchMethod {
    type Response = WatchReply;
    type ResponseStream = WatchReplies;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<WatchRequest>>) -> Self::Future {
        let service = Arc::clone(&self.0);
        Box::pin(async move { service.watch(request).await })
    }
}

impl<B> Service<http::Request<B>> for WatchServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != "/etcdserverpb.Watch/Watch" {
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let method = WatchMethod(Arc::clone(&self.inner));
        let (decoding, encoding) = (
            self.max_decoding_message_size,
            self.max_encoding_message_size,
        );
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(WatchCodec)
                .apply_compression_config(
                    EnabledCompressionEncodings::default(),
                    EnabledCompressionEncodings::default(),
                )
                .apply_max_message_size_config(decoding, encoding);
            Ok(grpc.streaming(method, request).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::ResponseHeader;
    use crate::pb::mvccpb::KeyValue;

    #[test]
    fn a_whole_reply_encodes_as_its_response() {
        let response = WatchResponse {
            watch_id: 7,
            created: true,
            ..Default::default()
        };
        let reply = WatchReply::Whole(response.clone());
        assert_eq!(reply.encoded_len(), response.encoded_len());
        assert_eq!(reply.encode_to_vec(), response.encode_to_vec());
    }

    #[test]
    fn encoding_from_shared_events_matches_prost_byte_for_byte() {
        // The hub hands out shared events only; build some through a real hub.
        let events = vec![
            Event {
                r#type: 0,
                kv: Some(KeyValue {
                    key: b"/a".to_vec(),
                    value: vec![b'v'; 300],
                    create_revision: 2,
                    mod_revision: 5,
                    version: 3,
                    lease: 0,
                }),
                prev_kv: Some(KeyValue {
                    key: b"/a".to_vec(),
                    value: b"old".to_vec(),
                    create_revision: 2,
                    mod_revision: 4,
                    version: 2,
                    lease: 0,
                }),
            },
            Event {
                r#type: 1,
                kv: Some(KeyValue {
                    key: b"/b".to_vec(),
                    mod_revision: 5,
                    ..Default::default()
                }),
                prev_kv: None,
            },
        ];
        for with_prev_kv in [false, true] {
            let shared = SharedEvents::new(events.clone(), with_prev_kv);
            let header = Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 5,
                raft_term: 3,
            });
            let reply = WatchReply::Shared {
                response: WatchResponse {
                    header,
                    watch_id: 9,
                    ..Default::default()
                },
                events: shared.clone(),
            };
            let expected = WatchResponse {
                header,
                watch_id: 9,
                events: shared.to_vec(),
                ..Default::default()
            };
            assert_eq!(reply.encoded_len(), expected.encoded_len());
            assert_eq!(reply.encode_to_vec(), expected.encode_to_vec());
            let decoded = WatchResponse::decode(reply.encode_to_vec().as_slice()).expect("decodes");
            assert_eq!(decoded.events.len(), 2);
            assert_eq!(decoded.events[0].prev_kv.is_some(), with_prev_kv);
        }
    }
}
