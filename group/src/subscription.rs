//! Reads the topic list out of a consumer-protocol member's subscription metadata, so OffsetDelete can tell which topics an active group still consumes.

use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

/// The newest subscription layout kafka-protocol decodes. Later versions only
/// append fields, so reading one as this version still yields its topics
/// (Kafka's own deserializer does the same).
const NEWEST_KNOWN_VERSION: i16 = 3;

/// Subscription metadata that is not a consumer-protocol subscription.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SubscriptionError {
    #[error("subscription metadata is {len} bytes, too short for a version header")]
    ReadVersion { len: usize },
    #[error("subscription metadata has invalid version {version}")]
    CheckVersion { version: i16 },
    #[error("decoding subscription metadata (version {version}) failed: {reason}")]
    Decode { version: i16, reason: String },
}

/// The topics a member subscribed to, from its JoinGroup protocol metadata:
/// a big-endian i16 version followed by a `ConsumerProtocolSubscription`.
pub(crate) fn subscribed_topics(metadata: &[u8]) -> Result<Vec<String>, SubscriptionError> {
    let (header, mut body) = match metadata {
        [hi, lo, body @ ..] => ([*hi, *lo], body),
        _ => {
            return Err(SubscriptionError::ReadVersion {
                len: metadata.len(),
            })
        }
    };
    let version = i16::from_be_bytes(header);
    if version < 0 {
        return Err(SubscriptionError::CheckVersion { version });
    }
    let version = version.min(NEWEST_KNOWN_VERSION);
    let subscription = ConsumerProtocolSubscription::decode(&mut body, version).map_err(|e| {
        SubscriptionError::Decode {
            version,
            reason: e.to_string(),
        }
    })?;
    Ok(subscription
        .topics
        .into_iter()
        .map(|topic| topic.to_string())
        .collect())
}

/// Encodes a subscription the way Java and librdkafka consumers send it.
#[cfg(test)]
pub(crate) fn encode_subscription(topics: &[&str], version: i16) -> bytes::Bytes {
    use kafka_protocol::protocol::{Encodable, StrBytes};

    let mut subscription = ConsumerProtocolSubscription::default();
    subscription.topics = topics
        .iter()
        .map(|t| StrBytes::from_string((*t).to_owned()))
        .collect();
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    if let Err(error) = subscription.encode(&mut buf, version) {
        panic!("encoding a test subscription failed: {error}");
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_topics_of_every_version_and_newer_ones() {
        for version in 0..=NEWEST_KNOWN_VERSION {
            let metadata = encode_subscription(&["orders", "payments"], version);
            assert_eq!(
                subscribed_topics(&metadata),
                Ok(vec!["orders".to_owned(), "payments".to_owned()]),
                "version {version}"
            );
        }
        // A future version: the v3 body plus fields we do not know.
        let mut future = encode_subscription(&["orders"], 3).to_vec();
        future[1] = 9;
        future.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(subscribed_topics(&future), Ok(vec!["orders".to_owned()]));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            subscribed_topics(&[1]),
            Err(SubscriptionError::ReadVersion { len: 1 })
        );
        assert_eq!(
            subscribed_topics(&[0xff, 0xff]),
            Err(SubscriptionError::CheckVersion { version: -1 })
        );
        assert!(matches!(
            subscribed_topics(&[0, 0, 0, 5, b'a']),
            Err(SubscriptionError::Decode { version: 0, .. })
        ));
    }
}
