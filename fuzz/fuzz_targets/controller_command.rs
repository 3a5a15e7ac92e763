//! Commands as a controller receives them in `Propose` (JSON, from any
//! broker or admin client), applied to a small populated state: two
//! brokers, topic `t0` (id 1, four partitions) with an uploaded object
//! `o0`, and a group's offsets. The input is one command or an array of up
//! to 16.
//!
//! Every controller applies the same log, so a panic in `apply` would stop
//! them all at once. So: `apply` never panics (overflow checks are on in
//! fuzz builds); a refused command leaves the state exactly as it was; an
//! accepted one leaves a state that survives the JSON round trip that
//! snapshots and watchers rely on; and the command with its placement
//! decided, as a controller logs it, applies exactly as it does.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use floe_controller::model::{
    apply, decide, Command, IndexCommit, IndexEntry, MetadataState, ObjectMeta, PartitionId,
};
use libfuzzer_sys::fuzz_target;

fn base() -> &'static MetadataState {
    static BASE: OnceLock<MetadataState> = OnceLock::new();
    BASE.get_or_init(|| {
        let topic_id = uuid::Uuid::from_u128(1);
        let entry = |partition: i32, key: &str| IndexCommit {
            partition: PartitionId {
                topic_id,
                partition,
            },
            entry: IndexEntry {
                base_offset: 0,
                end_offset: 10,
                leader_epoch: 0,
                object_key: key.to_owned(),
                byte_start: partition as u64 * 100,
                byte_len: 100,
                max_timestamp: 1_000,
            },
            producers: Vec::new(),
        };
        let register = |id: i32| Command::RegisterBroker {
            id,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            volume_wal: false,
        };
        let commands = [
            register(1),
            register(2),
            Command::CreateTopic {
                name: "t0".into(),
                id: topic_id,
                partitions: 4,
                configs: BTreeMap::new(),
                leader: 1,
            },
            Command::CommitObject {
                object: ObjectMeta {
                    key: "o0".into(),
                    size: 200,
                    created_ms: 1,
                    live_entries: 0,
                },
                entries: vec![entry(0, "o0"), entry(1, "o0")],
            },
        ];
        let mut state = MetadataState::default();
        for (index, cmd) in (1..).zip(&commands) {
            apply(&mut state, index, cmd).expect("the base state builds");
        }
        state
    })
}

fuzz_target!(|data: &[u8]| {
    let commands: Vec<Command> = match serde_json::from_slice::<Vec<Command>>(data) {
        Ok(commands) => commands,
        Err(_) => match serde_json::from_slice::<Command>(data) {
            Ok(command) => vec![command],
            Err(_) => return,
        },
    };
    let mut state = base().clone();
    for cmd in commands.iter().take(16) {
        let before = state.clone();
        let index = state.last_applied + 1;
        // Proposed, the command would be logged with its placement decided
        // (ADR 0013), as JSON: that must apply exactly as it does.
        let decided = decide(&state, cmd).map(|logged| {
            let json = serde_json::to_vec(&logged).expect("a decided command encodes");
            let logged: Command = serde_json::from_slice(&json).expect("a decided command decodes");
            let mut copy = state.clone();
            let result = apply(&mut copy, index, &logged);
            (copy, result)
        });
        let result = apply(&mut state, index, cmd);
        if let Some((copy, decided_result)) = decided {
            assert!(
                decided_result == result,
                "{cmd:?} decided applies differently"
            );
            assert!(copy == state, "{cmd:?} decided leaves another state");
        }
        match result {
            Ok(_) => {
                let json = serde_json::to_vec(&state).expect("an accepted state encodes");
                let back: MetadataState =
                    serde_json::from_slice(&json).expect("an accepted state decodes");
                assert!(back == state, "{cmd:?} left a state that does not round-trip");
            }
            Err(e) => {
                assert!(state == before, "refused {cmd:?} ({e}) changed the state");
            }
        }
    }
});
