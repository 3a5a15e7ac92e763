//! One module per Kafka API family. Handlers take decoded requests and return
//! responses; storage and metadata errors become Kafka error codes here, per
//! partition, and nowhere else.

pub mod admin;
pub mod config;
pub mod fetch;
pub mod groups;
pub mod meta;
pub mod produce;
pub mod reassign;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

pub(crate) fn code(e: ResponseError) -> i16 {
    e.code()
}

/// A partition this broker does not serve: unknown if metadata does not
/// know it either (`id` is `None`), else led elsewhere, so that clients
/// refresh metadata and go to its leader.
pub(crate) fn not_served(id: Option<floe_controller::model::PartitionId>) -> ResponseError {
    match id {
        Some(_) => ResponseError::NotLeaderOrFollower,
        None => ResponseError::UnknownTopicOrPartition,
    }
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(str_bytes(s))
}

/// Kafka's legal topic names: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub(crate) fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
}
