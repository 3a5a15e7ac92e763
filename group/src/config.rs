//! Group-coordinator tuning knobs, named after their Kafka broker settings, validated once at start-up.

use std::time::Duration;

/// Timing and size limits of the group coordinator.
///
/// Defaults follow Kafka except where noted; every field says which Kafka
/// setting it mirrors so operators can carry their tuning over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an
    /// Empty group waits for more members before answering JoinGroup, extended
    /// by the same amount each time another member arrives (bounded by the
    /// rebalance timeout). Kafka defaults to 3 s; Floe defaults to 300 ms so a
    /// lone consumer starts quickly and tests stay fast. Zero disables it.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms`: JoinGroup with a shorter session timeout
    /// gets INVALID_SESSION_TIMEOUT. Kafka defaults to 6 s; Floe accepts down to
    /// 1 s because a lower floor only accepts more clients.
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms` (Kafka: 30 min).
    pub max_session_timeout: Duration,
    /// How long a member that joined during a rebalance but has not yet been
    /// answered is kept if it stops retrying (Kafka's fixed 5 min
    /// `NewMemberJoinTimeoutMs`): it cannot heartbeat without a member id.
    pub new_member_join_timeout: Duration,
    /// `offset.metadata.max.bytes`: longer commit metadata gets
    /// OFFSET_METADATA_TOO_LARGE (Kafka: 4096).
    pub max_offset_metadata_bytes: usize,
    /// How long a group with no members stays in memory after its last
    /// request. Its committed offsets live in the offset store regardless, so
    /// forgetting it only frees memory (Kafka drops such groups on its offset
    /// cleanup pass, every 10 min by default).
    pub empty_group_retention: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_millis(300),
            min_session_timeout: Duration::from_secs(1),
            max_session_timeout: Duration::from_secs(30 * 60),
            new_member_join_timeout: Duration::from_secs(5 * 60),
            max_offset_metadata_bytes: 4096,
            empty_group_retention: Duration::from_secs(10 * 60),
        }
    }
}

/// A [`GroupConfig`] that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The session-timeout bounds are empty or start at zero.
    #[error(
        "group session timeout bounds are invalid (min {min:?}, max {max:?}): \
         set min_session_timeout above zero and no larger than max_session_timeout"
    )]
    ValidateSessionTimeouts { min: Duration, max: Duration },
    /// Forgetting idle groups immediately would drop them between requests.
    #[error("empty_group_retention must be above zero; use a few minutes")]
    ValidateRetention,
}

impl GroupConfig {
    /// Checks the knobs against each other; call once at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_session_timeout.is_zero() || self.min_session_timeout > self.max_session_timeout
        {
            return Err(ConfigError::ValidateSessionTimeouts {
                min: self.min_session_timeout,
                max: self.max_session_timeout,
            });
        }
        if self.empty_group_retention.is_zero() {
            return Err(ConfigError::ValidateRetention);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_inverted_bounds_are_not() {
        assert_eq!(GroupConfig::default().validate(), Ok(()));
        let inverted = GroupConfig {
            min_session_timeout: Duration::from_secs(10),
            max_session_timeout: Duration::from_secs(5),
            ..GroupConfig::default()
        };
        assert!(matches!(
            inverted.validate(),
            Err(ConfigError::ValidateSessionTimeouts { .. })
        ));
        let no_retention = GroupConfig {
            empty_group_retention: Duration::ZERO,
            ..GroupConfig::default()
        };
        assert_eq!(no_retention.validate(), Err(ConfigError::ValidateRetention));
    }
}
