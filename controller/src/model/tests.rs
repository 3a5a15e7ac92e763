//! The read helpers and the serialized form of the state.

use crate::model::fixture::{commit, create_topic, pid, topic_id, trim, Driver};
use crate::model::MetadataState;

/// Topic 1 with entries [0,10) [10,25) [25,40) on partition 0, timestamps
/// 1000, 2500, 4000 (the fixture uses end * 100), trimmed to 12.
fn indexed() -> Driver {
    let mut d = Driver::default();
    d.ok(create_topic("a", 1, 2));
    let p0 = pid(1, 0);
    d.ok(commit("o1", &[(p0, 0, 10, 0), (p0, 10, 25, 0)]));
    d.ok(commit("o2", &[(p0, 25, 40, 0)]));
    d.ok(trim(p0, 12));
    d
}

#[test]
fn index_entry_at_finds_the_entry_holding_a_readable_offset() {
    let d = indexed();
    let p0 = pid(1, 0);
    let base_at = |offset| d.state.index_entry_at(p0, offset).map(|e| e.base_offset);
    assert_eq!(base_at(11), None, "below the log start");
    assert_eq!(base_at(12), Some(10));
    assert_eq!(base_at(24), Some(10));
    assert_eq!(base_at(25), Some(25));
    assert_eq!(base_at(39), Some(25));
    assert_eq!(base_at(40), None, "at the committed end");
    assert_eq!(d.state.index_entry_at(pid(1, 1), 0), None);
    assert_eq!(d.state.index_entry_at(pid(9, 0), 0), None);
}

#[test]
fn offset_for_timestamp_finds_the_first_entry_reaching_it() {
    let d = indexed();
    let p0 = pid(1, 0);
    let base_for = |ts| d.state.offset_for_timestamp(p0, ts).map(|e| e.base_offset);
    assert_eq!(base_for(i64::MIN), Some(10));
    assert_eq!(base_for(2500), Some(10));
    assert_eq!(base_for(2501), Some(25));
    assert_eq!(base_for(4000), Some(25));
    assert_eq!(base_for(4001), None);
    assert_eq!(d.state.offset_for_timestamp(pid(1, 1), 0), None);
}

#[test]
fn state_round_trips_through_json_and_rebuilds_the_id_lookup() {
    let d = indexed();
    let json = serde_json::to_string(&d.state).expect("serialize");
    assert!(!json.contains("topic_names"), "derived data is not stored");
    let back: MetadataState = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, d.state);
    assert_eq!(back.topic_names, d.state.topic_names);
    assert!(back.topic_by_id(topic_id(1)).is_some());
}

#[test]
fn deserializing_refuses_topics_that_share_an_id_or_misname() {
    let mut d = Driver::default();
    d.ok(create_topic("a", 1, 1));
    d.ok(create_topic("b", 2, 1));
    let mut value = serde_json::to_value(&d.state).expect("serialize");
    value["topics"]["b"]["id"] = value["topics"]["a"]["id"].clone();
    let err = serde_json::from_value::<MetadataState>(value.clone()).expect_err("shared id");
    assert!(err.to_string().contains("share the id"), "{err}");
    value["topics"]["b"]["id"] = serde_json::json!(topic_id(2));
    value["topics"]["b"]["name"] = serde_json::json!("c");
    let err = serde_json::from_value::<MetadataState>(value).expect_err("misnamed");
    assert!(err.to_string().contains("is named"), "{err}");
}
