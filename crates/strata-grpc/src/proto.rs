//! Messages, clients and servers generated from `proto/*.proto` at build time.
//!
//! The module tree mirrors the protobuf packages because the generated code
//! refers to other packages by relative `super::` paths.
//!
//! Generated code is exempt from our lints: it is not ours to fix, it trips
//! `clippy::large_enum_variant` and `clippy::enum_variant_names`, and the
//! services use only part of it.

/// Package `event_store.client` and the v1 services below it.
pub(crate) mod event_store {
    pub(crate) mod client {
        #![allow(dead_code, clippy::all, reason = "generated")]
        include!(concat!(env!("OUT_DIR"), "/event_store.client.rs"));

        pub(crate) mod streams {
            #![allow(dead_code, clippy::all, reason = "generated")]
            include!(concat!(env!("OUT_DIR"), "/event_store.client.streams.rs"));
        }

        pub(crate) mod persistent_subscriptions {
            #![allow(dead_code, clippy::all, reason = "generated")]
            include!(concat!(
                env!("OUT_DIR"),
                "/event_store.client.persistent_subscriptions.rs"
            ));
        }

        pub(crate) mod server_features {
            #![allow(dead_code, clippy::all, reason = "generated")]
            include!(concat!(
                env!("OUT_DIR"),
                "/event_store.client.server_features.rs"
            ));
        }

        pub(crate) mod users {
            #![allow(dead_code, clippy::all, reason = "generated")]
            include!(concat!(env!("OUT_DIR"), "/event_store.client.users.rs"));
        }

        pub(crate) mod projections {
            #![allow(dead_code, clippy::all, reason = "generated")]
            include!(concat!(
                env!("OUT_DIR"),
                "/event_store.client.projections.rs"
            ));
        }

        pub(crate) mod operations {
            #![allow(dead_code, clippy::all, reason = "generated")]
            include!(concat!(
                env!("OUT_DIR"),
                "/event_store.client.operations.rs"
            ));
        }

        pub(crate) mod gossip {
            #![allow(dead_code, clippy::all, reason = "generated")]
            include!(concat!(env!("OUT_DIR"), "/event_store.client.gossip.rs"));
        }
    }
}

/// Package `kurrentdb.protocol.v2.streams`: the v2 `StreamsService` and its error details.
pub(crate) mod kurrentdb {
    pub(crate) mod protocol {
        pub(crate) mod v2 {
            pub(crate) mod streams {
                #![allow(dead_code, clippy::all, reason = "generated")]
                include!(concat!(
                    env!("OUT_DIR"),
                    "/kurrentdb.protocol.v2.streams.rs"
                ));

                pub(crate) mod errors {
                    #![allow(dead_code, clippy::all, reason = "generated")]
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/kurrentdb.protocol.v2.streams.errors.rs"
                    ));
                }
            }
        }
    }
}

/// The `Streams` server answering reads with `ReadAnswer` (build.rs, second pass); its
/// messages are those of `event_store::client::streams`.
pub(crate) mod streams_service {
    #![allow(dead_code, clippy::all, reason = "generated")]
    include!(concat!(
        env!("OUT_DIR"),
        "/streams_server/event_store.client.streams.rs"
    ));
}

/// Package `google.rpc`: `Status` (with a single `Any` detail) and `Code`.
pub(crate) mod google {
    pub(crate) mod rpc {
        #![allow(dead_code, clippy::all, reason = "generated")]
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use prost::bytes::Bytes;

    use super::event_store::client::streams::{AppendReq, append_req};
    use super::event_store::client::{Empty, StreamIdentifier, Uuid, uuid};

    fn stream_identifier(name: &str) -> Option<StreamIdentifier> {
        Some(StreamIdentifier {
            stream_name: Bytes::copy_from_slice(name.as_bytes()),
        })
    }

    #[test]
    fn append_req_options_round_trip() {
        let options = AppendReq {
            content: Some(append_req::Content::Options(append_req::Options {
                stream_identifier: stream_identifier("order-42"),
                expected_stream_revision: Some(
                    append_req::options::ExpectedStreamRevision::Revision(7),
                ),
            })),
        };
        let decoded = AppendReq::decode(options.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, options);

        // Empty marker branches must survive too: they are how clients say "any".
        let any = AppendReq {
            content: Some(append_req::Content::Options(append_req::Options {
                stream_identifier: stream_identifier("order-42"),
                expected_stream_revision: Some(append_req::options::ExpectedStreamRevision::Any(
                    Empty {},
                )),
            })),
        };
        let decoded = AppendReq::decode(any.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, any);
    }

    #[test]
    fn append_req_proposed_message_round_trip() {
        let message = AppendReq {
            content: Some(append_req::Content::ProposedMessage(
                crate::proposed_message::ProposedMessage {
                    id: Some(Uuid {
                        value: Some(uuid::Value::String(
                            "3f2504e0-4f89-11d3-9a0c-0305e82c3301".to_owned(),
                        )),
                    }),
                    metadata: [
                        ("type".to_owned(), "OrderPlaced".to_owned()),
                        ("content-type".to_owned(), "application/json".to_owned()),
                    ]
                    .into_iter()
                    .collect(),
                    custom_metadata: Bytes::from_static(b"{\"user\":\"ada\"}"),
                    data: Bytes::from_static(b"{\"total\":10}"),
                },
            )),
        };
        let decoded = AppendReq::decode(message.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, message);
    }

    #[test]
    fn uuid_structured_round_trip() {
        let structured = Uuid {
            value: Some(uuid::Value::Structured(uuid::Structured {
                most_significant_bits: 0x3f25_04e0_4f89_11d3,
                least_significant_bits: i64::MIN + 0x1a0c_0305_e82c_3301,
            })),
        };
        let decoded = Uuid::decode(structured.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, structured);
    }

    #[test]
    fn uuid_string_round_trip() {
        let string = Uuid {
            value: Some(uuid::Value::String(
                "3f2504e0-4f89-11d3-9a0c-0305e82c3301".to_owned(),
            )),
        };
        let decoded = Uuid::decode(string.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, string);
    }

    /// Pins the wire layout, not just a round trip: field 2 of UUID, wire
    /// type 2 (length-delimited), then the text.
    #[test]
    fn uuid_string_wire_bytes() {
        let text = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
        let string = Uuid {
            value: Some(uuid::Value::String(text.to_owned())),
        };
        let mut expected = vec![0x12, 36];
        expected.extend_from_slice(text.as_bytes());
        assert_eq!(string.encode_to_vec(), expected);
    }
}

/// Package `strata.dcb.v1`: Strata's own DCB service (docs/DCB.md).
pub(crate) mod strata {
    pub(crate) mod dcb {
        pub(crate) mod v1 {
            #![allow(dead_code, clippy::all, reason = "generated")]
            include!(concat!(env!("OUT_DIR"), "/strata.dcb.v1.rs"));
        }
    }
}
