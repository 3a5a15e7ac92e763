//! The state machine driven by hand: explicit instants, replies read with `try_recv`, no runtime.

mod checks;

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::*;
use crate::subscription::encode_subscription;

const DELAY: Duration = Duration::from_millis(300);
const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn new_group() -> Group {
    let config = GroupConfig {
        initial_rebalance_delay: DELAY,
        ..GroupConfig::default()
    };
    Group::new("g".to_owned(), config)
}

fn protocols(list: &[(&str, &[u8])]) -> Vec<Protocol> {
    list.iter()
        .map(|(name, metadata)| Protocol {
            name: (*name).to_owned(),
            metadata: Bytes::copy_from_slice(metadata),
        })
        .collect()
}

/// A JoinGroup below v4: new members get their id at once.
fn params(member_id: &str) -> JoinParams {
    JoinParams {
        member_id: member_id.to_owned(),
        instance_id: None,
        client_id: "client".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".to_owned(),
        protocols: protocols(&[("range", b"sub")]),
        require_known_member_id: false,
    }
}

fn join(group: &mut Group, params: JoinParams, now: Instant) -> oneshot::Receiver<JoinOutcome> {
    let (tx, rx) = oneshot::channel();
    group.join(params, now, tx);
    rx
}

fn sync(
    group: &mut Group,
    member_id: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
    now: Instant,
) -> oneshot::Receiver<SyncOutcome> {
    let (tx, rx) = oneshot::channel();
    let params = SyncParams {
        member: member(member_id),
        generation,
        protocol_type: None,
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| ((*m).to_owned(), Bytes::copy_from_slice(a)))
            .collect(),
    };
    group.sync(params, now, tx);
    rx
}

fn member(id: &str) -> MemberRef {
    MemberRef {
        member_id: id.to_owned(),
        instance_id: None,
    }
}

fn answered<T>(rx: &mut oneshot::Receiver<T>) -> T {
    rx.try_recv().expect("reply should have been sent")
}

fn parked<T>(rx: &mut oneshot::Receiver<T>) -> bool {
    matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
}

/// Two members joined and synced: (group, leader id, follower id, now).
fn stable_pair() -> (Group, String, String, Instant) {
    let mut g = new_group();
    let t0 = Instant::now();
    let mut a = join(&mut g, params(""), t0);
    let mut b = join(&mut g, params(""), t0);
    // The second joiner extends the initial delay once.
    g.tick(t0 + DELAY);
    g.tick(t0 + DELAY * 2);
    let a = answered(&mut a);
    let b = answered(&mut b);
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    let now = t0 + DELAY * 2;
    let mut f = sync(&mut g, &follower.member_id, 1, &[], now);
    let mut l = sync(
        &mut g,
        &leader.member_id,
        1,
        &[(&leader.member_id, b"L"), (&follower.member_id, b"F")],
        now,
    );
    assert_eq!(answered(&mut f).assignment, Bytes::from_static(b"F"));
    assert_eq!(answered(&mut l).assignment, Bytes::from_static(b"L"));
    assert_eq!(g.state(), GroupState::Stable);
    (g, leader.member_id, follower.member_id, now)
}

#[test]
fn first_rebalance_waits_for_the_initial_delay_and_extends_it_for_newcomers() {
    let mut g = new_group();
    let t0 = Instant::now();
    let mut a = join(&mut g, params(""), t0);
    assert!(parked(&mut a));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.next_deadline(), Some(t0 + DELAY));

    let mut b = join(&mut g, params(""), t0 + ms(100));
    // Everyone has joined, but the initial delay never completes early.
    assert!(parked(&mut a) && parked(&mut b));
    g.tick(t0 + DELAY);
    assert!(
        parked(&mut a) && parked(&mut b),
        "a newcomer earns another delay"
    );
    assert_eq!(g.next_deadline(), Some(t0 + DELAY * 2));

    g.tick(t0 + DELAY * 2);
    let a = answered(&mut a);
    let b = answered(&mut b);
    assert_eq!((a.error, b.error), (None, None));
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
    assert_eq!(a.leader, b.leader);
    assert!(a.member_id.starts_with("client-") && a.member_id != b.member_id);
    assert_eq!(a.protocol_name.as_deref(), Some("range"));
    assert_eq!(a.protocol_type.as_deref(), Some("consumer"));
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    let mut listed: Vec<_> = leader.members.iter().map(|m| m.member_id.clone()).collect();
    listed.sort();
    let mut expected = vec![leader.member_id.clone(), follower.member_id.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(leader.members[0].metadata, Bytes::from_static(b"sub"));
    assert!(follower.members.is_empty());
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[test]
fn follower_sync_waits_for_the_leader_and_errors_are_precise() {
    let mut g = new_group();
    let t0 = Instant::now();
    let mut a = join(&mut g, params(""), t0);
    let mut b = join(&mut g, params(""), t0);
    // The second joiner extends the initial delay once.
    g.tick(t0 + DELAY);
    g.tick(t0 + DELAY * 2);
    let (a, b) = (answered(&mut a), answered(&mut b));
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    let now = t0 + DELAY * 2;

    let mut wrong_gen = sync(&mut g, &follower.member_id, 7, &[], now);
    assert_eq!(
        answered(&mut wrong_gen).error,
        Some(ResponseError::IllegalGeneration)
    );
    let mut stranger = sync(&mut g, "nobody", 1, &[], now);
    assert_eq!(
        answered(&mut stranger).error,
        Some(ResponseError::UnknownMemberId)
    );

    let mut f = sync(&mut g, &follower.member_id, 1, &[], now);
    assert!(parked(&mut f), "followers wait for the leader's assignment");
    // Heartbeats are fine while the leader computes the assignment.
    assert_eq!(g.heartbeat(&member(&follower.member_id), 1, now), Ok(()));
    let mut l = sync(
        &mut g,
        &leader.member_id,
        1,
        &[(&follower.member_id, b"F")],
        now,
    );
    let l = answered(&mut l);
    let f = answered(&mut f);
    assert_eq!((l.error, f.error), (None, None));
    assert_eq!(f.assignment, Bytes::from_static(b"F"));
    assert_eq!(l.assignment, Bytes::new(), "left out by the leader: empty");
    assert_eq!(f.protocol_name.as_deref(), Some("range"));
    assert_eq!(g.state(), GroupState::Stable);

    let summary = g.summary();
    assert_eq!(summary.protocol, "range");
    let described = summary
        .members
        .iter()
        .find(|m| m.member_id == follower.member_id)
        .expect("follower described");
    assert_eq!(described.assignment, Bytes::from_static(b"F"));
    assert_eq!(described.metadata, Bytes::from_static(b"sub"));
}

#[test]
fn a_newcomer_makes_others_rejoin_and_the_generation_advances() {
    let (mut g, leader, follower, now) = stable_pair();
    let mut c = join(&mut g, params(""), now);
    assert!(parked(&mut c));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&member(&follower), 1, now),
        Err(ResponseError::RebalanceInProgress)
    );
    let mut stale = sync(&mut g, &follower, 1, &[], now);
    assert_eq!(
        answered(&mut stale).error,
        Some(ResponseError::RebalanceInProgress)
    );

    let mut l = join(&mut g, params(&leader), now + ms(10));
    assert!(parked(&mut l), "still waiting for the follower");
    let mut f = join(&mut g, params(&follower), now + ms(20));
    let outcomes = [answered(&mut l), answered(&mut f), answered(&mut c)];
    assert!(outcomes
        .iter()
        .all(|o| o.error.is_none() && o.generation_id == 2));
    assert_eq!(outcomes[0].leader, leader, "the leader keeps its role");
    assert_eq!(outcomes[0].members.len(), 3);
}

#[test]
fn a_silent_member_expires_after_its_session_timeout() {
    let (mut g, leader, follower, now) = stable_pair();
    // The leader heartbeats every 3 s; the follower never does.
    for secs in [3, 6, 9] {
        let t = now + Duration::from_secs(secs);
        assert_eq!(g.next_deadline(), Some(now + SESSION));
        g.tick(t);
        assert_eq!(g.heartbeat(&member(&leader), 1, t), Ok(()));
    }
    g.tick(now + SESSION);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&member(&follower), 1, now + SESSION),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.heartbeat(&member(&leader), 1, now + SESSION),
        Err(ResponseError::RebalanceInProgress)
    );
    // The only remaining member rejoining completes the rebalance at once.
    let mut l = join(&mut g, params(&leader), now + SESSION);
    let l = answered(&mut l);
    assert_eq!((l.error, l.generation_id, l.members.len()), (None, 2, 1));
}

#[test]
fn leaving_triggers_a_rebalance_and_the_last_one_out_empties_the_group() {
    let (mut g, leader, follower, now) = stable_pair();
    assert_eq!(g.leave(&[member(&leader)], now), Ok(vec![Ok(())]));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.leave(&[member(&leader), member("ghost")], now),
        Ok(vec![
            Err(ResponseError::UnknownMemberId),
            Err(ResponseError::UnknownMemberId)
        ])
    );
    let mut f = join(&mut g, params(&follower), now);
    let f = answered(&mut f);
    assert_eq!((f.generation_id, f.leader.as_str()), (2, follower.as_str()));
    let mut s = sync(&mut g, &follower, 2, &[], now);
    assert_eq!(answered(&mut s).error, None);

    assert_eq!(g.leave(&[member(&follower)], now), Ok(vec![Ok(())]));
    assert_eq!(g.state(), GroupState::Empty);
    assert!(g.is_idle());
    assert_eq!(g.summary().protocol_type, "consumer", "kept while empty");
}

#[test]
fn member_id_required_then_rejoin_with_the_id() {
    let mut g = new_group();
    let t0 = Instant::now();
    let v4 = JoinParams {
        require_known_member_id: true,
        ..params("")
    };
    let mut first = join(&mut g, v4.clone(), t0);
    let first = answered(&mut first);
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert!(first.member_id.starts_with("client-"));
    assert_eq!(
        g.state(),
        GroupState::Empty,
        "no rebalance until it rejoins"
    );
    assert!(!g.is_idle());

    let mut rejoin = join(
        &mut g,
        JoinParams {
            member_id: first.member_id.clone(),
            ..v4
        },
        t0 + ms(5),
    );
    assert!(parked(&mut rejoin));
    g.tick(t0 + ms(5) + DELAY);
    let rejoin = answered(&mut rejoin);
    assert_eq!(rejoin.member_id, first.member_id);
    assert_eq!((rejoin.error, rejoin.generation_id), (None, 1));
}

#[test]
fn an_unclaimed_member_id_expires_and_stops_holding_up_the_rebalance() {
    let (mut g, leader, follower, now) = stable_pair();
    let v4 = JoinParams {
        require_known_member_id: true,
        ..params("")
    };
    let mut newcomer = join(&mut g, v4, now);
    assert_eq!(
        answered(&mut newcomer).error,
        Some(ResponseError::MemberIdRequired)
    );
    // The leader rejoins (a rebalance); the follower too; the pending id
    // still holds the rebalance open...
    let mut l = join(&mut g, params(&leader), now);
    let mut f = join(&mut g, params(&follower), now);
    assert!(parked(&mut l) && parked(&mut f));
    // ...until its session timeout passes.
    assert_eq!(g.next_deadline(), Some(now + SESSION));
    g.tick(now + SESSION);
    assert_eq!(answered(&mut l).generation_id, 2);
    assert_eq!(answered(&mut f).generation_id, 2);
}

#[test]
fn protocols_are_chosen_by_vote_among_common_ones() {
    let mut g = new_group();
    let t0 = Instant::now();
    let with = |list: &[(&str, &[u8])]| JoinParams {
        protocols: protocols(list),
        ..params("")
    };
    let mut a = join(&mut g, with(&[("range", b"a"), ("sticky", b"a2")]), t0);
    let _b = join(&mut g, with(&[("sticky", b"b"), ("range", b"b2")]), t0);
    let _c = join(&mut g, with(&[("sticky", b"c"), ("range", b"c2")]), t0);
    let mut bad = join(&mut g, with(&[("roundrobin", b"d")]), t0);
    assert_eq!(
        answered(&mut bad).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let mut other_type = join(
        &mut g,
        JoinParams {
            protocol_type: "connect".to_owned(),
            ..with(&[("range", b"x")])
        },
        t0,
    );
    assert_eq!(
        answered(&mut other_type).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    g.tick(t0 + DELAY);
    g.tick(t0 + DELAY * 2);
    let a = answered(&mut a);
    assert_eq!(a.protocol_name.as_deref(), Some("sticky"));
    if a.member_id == a.leader {
        assert!(a
            .members
            .iter()
            .any(|m| m.metadata == Bytes::from_static(b"a2")));
    }
}

#[test]
fn bad_session_timeouts_are_refused() {
    let mut g = new_group();
    let mut short = join(
        &mut g,
        JoinParams {
            session_timeout: ms(10),
            ..params("")
        },
        Instant::now(),
    );
    assert_eq!(
        answered(&mut short).error,
        Some(ResponseError::InvalidSessionTimeout)
    );
}

#[test]
fn an_unchanged_follower_rejoining_a_stable_group_gets_the_current_generation() {
    let (mut g, leader, follower, now) = stable_pair();
    let mut f = join(&mut g, params(&follower), now);
    let f = answered(&mut f);
    assert_eq!((f.error, f.generation_id, f.leader), (None, 1, leader));
    assert_eq!(g.state(), GroupState::Stable);
}

#[test]
fn a_static_member_restarting_keeps_its_id_without_a_rebalance() {
    let mut g = new_group();
    let t0 = Instant::now();
    let static_params = JoinParams {
        instance_id: Some("pod-0".to_owned()),
        require_known_member_id: true,
        ..params("")
    };
    // A dynamic member first, so it leads and the static one follows.
    let mut leader = join(&mut g, params(""), t0);
    // Static members skip MEMBER_ID_REQUIRED.
    let mut first = join(&mut g, static_params.clone(), t0);
    g.tick(t0 + DELAY);
    g.tick(t0 + DELAY * 2);
    let (leader, first) = (answered(&mut leader), answered(&mut first));
    assert_eq!(
        (first.error, first.leader.as_str()),
        (None, leader.member_id.as_str())
    );
    assert!(first.member_id.starts_with("pod-0-"));
    let now = t0 + DELAY * 2;
    let _l = sync(
        &mut g,
        &leader.member_id,
        1,
        &[(&first.member_id, b"A")],
        now,
    );
    let mut s = sync(&mut g, &first.member_id, 1, &[], now);
    assert_eq!(answered(&mut s).assignment, Bytes::from_static(b"A"));

    // The instance restarts and joins without its member id.
    let mut again = join(&mut g, static_params, now + ms(50));
    let again = answered(&mut again);
    assert_eq!(again.member_id, first.member_id, "same instance, same id");
    assert_eq!((again.error, again.generation_id), (None, 1));
    assert_eq!(g.state(), GroupState::Stable, "no rebalance");
    let mut s = sync(&mut g, &again.member_id, 1, &[], now + ms(60));
    assert_eq!(answered(&mut s).assignment, Bytes::from_static(b"A"));

    let fenced = MemberRef {
        member_id: "impostor".to_owned(),
        instance_id: Some("pod-0".to_owned()),
    };
    assert_eq!(
        g.leave(&[fenced], now),
        Ok(vec![Err(ResponseError::FencedInstanceId)])
    );
    assert_eq!(g.heartbeat(&member(&again.member_id), 1, now), Ok(()));
}

#[test]
fn a_leader_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let mut g = new_group();
    let t0 = Instant::now();
    let mut a = join(&mut g, params(""), t0);
    let mut b = join(&mut g, params(""), t0);
    // The second joiner extends the initial delay once.
    g.tick(t0 + DELAY);
    g.tick(t0 + DELAY * 2);
    let (a, b) = (answered(&mut a), answered(&mut b));
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    let start = t0 + DELAY * 2;
    let mut f = sync(&mut g, &follower.member_id, 1, &[], start);
    assert!(parked(&mut f));
    // The leader keeps heartbeating but never sends its SyncGroup.
    for secs in [5, 10, 15, 20, 25] {
        let t = start + Duration::from_secs(secs);
        g.tick(t);
        assert_eq!(g.heartbeat(&member(&leader.member_id), 1, t), Ok(()));
    }
    assert!(parked(&mut f));
    assert_eq!(g.next_deadline(), Some(start + REBALANCE));
    g.tick(start + REBALANCE);
    assert_eq!(
        answered(&mut f).error,
        Some(ResponseError::RebalanceInProgress)
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let left: Vec<_> = g
        .summary()
        .members
        .into_iter()
        .map(|m| m.member_id)
        .collect();
    assert_eq!(left, vec![follower.member_id.clone()]);
    // Released from SyncGroup, the follower gets a fresh session to rejoin.
    assert_eq!(g.next_deadline(), Some(start + REBALANCE + SESSION));
}

#[test]
fn timers_never_leave_a_deadline_in_the_past() {
    let (mut g, _leader, _follower, now) = stable_pair();
    let _c = join(&mut g, params(""), now);
    let mut t = now;
    for _ in 0..20 {
        let Some(deadline) = g.next_deadline() else {
            break;
        };
        t = deadline.max(t);
        g.tick(t);
        assert!(
            g.next_deadline().is_none_or(|d| d > t),
            "tick must clear what is due"
        );
    }
    assert_eq!(
        g.state(),
        GroupState::Empty,
        "everyone eventually timed out"
    );
}
