//! The checks guarding offset commits, group deletion and offset deletion, on hand-driven groups.

use super::*;

#[test]
fn commits_are_checked_against_the_generation() {
    let mut g = new_group();
    let t0 = Instant::now();
    let simple = member("");
    assert_eq!(
        g.validate_commit(&simple, -1, t0),
        Ok(()),
        "simple commit to Empty"
    );

    let (mut g, leader, _follower, now) = stable_pair();
    assert_eq!(g.validate_commit(&member(&leader), 1, now), Ok(()));
    assert_eq!(
        g.validate_commit(&member(&leader), 0, now),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.validate_commit(&simple, -1, now),
        Err(ResponseError::UnknownMemberId),
        "an active group does not take simple commits"
    );
    let _c = join(&mut g, params(""), now);
    assert_eq!(
        g.validate_commit(&member(&leader), 1, now),
        Ok(()),
        "members may commit before rejoining"
    );
    let mut l = join(&mut g, params(&leader), now);
    g.tick(now + REBALANCE);
    assert_eq!(answered(&mut l).generation_id, 2);
    assert_eq!(
        g.validate_commit(&member(&leader), 2, now + REBALANCE),
        Err(ResponseError::RebalanceInProgress),
        "no commits between JoinGroup and SyncGroup"
    );
}

#[test]
fn deletion_needs_an_empty_group() {
    let (mut g, leader, follower, now) = stable_pair();
    assert_eq!(g.delete(), Err(ResponseError::NonEmptyGroup));
    g.leave(&[member(&leader), member(&follower)], now)
        .expect("leave");
    assert_eq!(g.delete(), Ok(()));
    assert_eq!(g.summary().state, GroupState::Dead);
    assert_eq!(g.delete(), Err(ResponseError::GroupIdNotFound));
    let mut late = join(&mut g, params(""), now);
    assert_eq!(
        answered(&mut late).error,
        Some(ResponseError::CoordinatorNotAvailable)
    );
}

#[test]
fn offset_deletion_spares_subscribed_topics_of_active_consumer_groups() {
    let mut g = new_group();
    assert_eq!(g.offset_delete_scope(), Ok(OffsetDeleteScope::Any));
    let t0 = Instant::now();
    let subscribed = encode_subscription(&["orders"], 1);
    let _a = join(
        &mut g,
        JoinParams {
            protocols: protocols(&[("range", &subscribed)]),
            ..params("")
        },
        t0,
    );
    assert_eq!(
        g.offset_delete_scope(),
        Ok(OffsetDeleteScope::ExceptTopics(
            ["orders".to_owned()].into()
        ))
    );

    let mut other = new_group();
    let _x = join(
        &mut other,
        JoinParams {
            protocol_type: "connect".to_owned(),
            ..params("")
        },
        t0,
    );
    assert_eq!(
        other.offset_delete_scope(),
        Err(ResponseError::NonEmptyGroup)
    );
}
