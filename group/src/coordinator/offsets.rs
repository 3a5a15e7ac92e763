//! OffsetCommit, OffsetFetch and OffsetDelete: the group's task decides whether a write is allowed, the offset store makes it durable before the client hears back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::{blocking, Command, GroupCoordinator, ATTEMPTS};
use crate::group::{MemberRef, OffsetDeleteScope};
use crate::store::OffsetCommitEntry;
use crate::wire::str_bytes;

/// Offsets asked for, per topic; `None` means every committed one.
type Wanted = Option<Vec<(String, Vec<i32>)>>;
/// Per topic, per partition: the committed entry, if any.
type Fetched = Vec<(String, Vec<(i32, Option<OffsetCommitEntry>)>)>;

impl GroupCoordinator {
    /// OffsetCommit v2-9. Answers only once the offsets are durable.
    #[tracing::instrument(level = "debug", skip_all, fields(group = %req.group_id.as_str(), version = version))]
    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        let group = req.group_id.to_string();
        let member = MemberRef {
            member_id: req.member_id.to_string(),
            instance_id: (version >= 7)
                .then(|| req.group_instance_id.as_ref().map(|i| i.to_string()))
                .flatten(),
        };
        let generation = req.generation_id_or_member_epoch;
        let commit_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let entries: Vec<OffsetCommitEntry> = req
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|p| OffsetCommitEntry {
                    topic: topic.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    commit_ms,
                })
            })
            .collect();

        let mut codes = self
            .commit(&group, &member, generation, entries)
            .await
            .into_iter();
        let mut resp = OffsetCommitResponse::default();
        for topic in req.topics {
            let mut out = OffsetCommitResponseTopic::default();
            for p in &topic.partitions {
                let mut partition = OffsetCommitResponsePartition::default();
                partition.partition_index = p.partition_index;
                partition.error_code = codes.next().unwrap_or(0);
                out.partitions.push(partition);
            }
            out.name = topic.name;
            resp.topics.push(out);
        }
        resp
    }

    /// Checks the commit with the group, then writes it; one error code per
    /// entry, in order.
    async fn commit(
        &self,
        group: &str,
        member: &MemberRef,
        generation: i32,
        entries: Vec<OffsetCommitEntry>,
    ) -> Vec<i16> {
        let all = |error: ResponseError| vec![error.code(); entries.len()];
        for _ in 0..ATTEMPTS {
            // Only a simple commit may bring a group into being; a
            // generation names one that must exist (Kafka answers
            // ILLEGAL_GENERATION when it does not).
            let Some(handle) = self.handle(group, generation < 0) else {
                return all(ResponseError::IllegalGeneration);
            };
            let _in_order = handle.offset_writes.lock().await;
            let verdict = handle
                .ask(|reply| Command::ValidateCommit {
                    member: member.clone(),
                    generation,
                    reply,
                })
                .await;
            match verdict {
                Some(Ok(())) => return self.write_offsets(group, entries).await,
                Some(Err(error)) => return all(error),
                None => self.forget(group, &handle),
            }
        }
        all(ResponseError::CoordinatorNotAvailable)
    }

    /// Writes the valid entries in one durable commit; the others get their
    /// own error.
    async fn write_offsets(&self, group: &str, entries: Vec<OffsetCommitEntry>) -> Vec<i16> {
        let count = entries.len();
        let store = self.store();
        let max_metadata = self.config().max_offset_metadata_bytes;
        let group = group.to_owned();
        let written = blocking(move || {
            let mut known_topics: HashMap<String, bool> = HashMap::new();
            let mut codes = Vec::with_capacity(entries.len());
            let mut valid = Vec::new();
            for entry in entries {
                let exists = *known_topics
                    .entry(entry.topic.clone())
                    .or_insert_with(|| store.topic_exists(&entry.topic));
                let code = if entry.metadata.len() > max_metadata {
                    Some(ResponseError::OffsetMetadataTooLarge.code())
                } else if !exists {
                    Some(ResponseError::UnknownTopicOrPartition.code())
                } else {
                    valid.push(entry);
                    None
                };
                codes.push(code);
            }
            let written = if valid.is_empty() {
                0
            } else {
                match store.commit(&group, valid) {
                    Ok(()) => 0,
                    Err(error) => {
                        tracing::warn!(%error, "offset commit failed");
                        ResponseError::CoordinatorNotAvailable.code()
                    }
                }
            };
            codes
                .into_iter()
                .map(|code| code.unwrap_or(written))
                .collect::<Vec<i16>>()
        })
        .await;
        written.unwrap_or_else(|error| vec![error.code(); count])
    }

    /// OffsetFetch v1-9: v1-7 ask for one group, v8+ for several. Unknown
    /// partitions come back with offset -1, which clients read as "no
    /// committed offset, apply auto.offset.reset".
    #[tracing::instrument(level = "debug", skip_all, fields(version = version))]
    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let mut resp = OffsetFetchResponse::default();
        if version < 8 {
            let wanted: Wanted = req.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            match self.fetch_offsets(req.group_id.to_string(), wanted).await {
                Ok(fetched) => resp.topics = v1_topics(fetched),
                Err(error) if version >= 2 => resp.error_code = error.code(),
                // v1 has no group-level error; the partitions stay empty and
                // the client retries.
                Err(_) => {}
            }
            return resp;
        }
        for group in req.groups {
            let wanted: Wanted = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let mut out = OffsetFetchResponseGroup::default();
            match self.fetch_offsets(group.group_id.to_string(), wanted).await {
                Ok(fetched) => out.topics = v8_topics(fetched),
                Err(error) => out.error_code = error.code(),
            }
            out.group_id = group.group_id;
            resp.groups.push(out);
        }
        resp
    }

    async fn fetch_offsets(&self, group: String, wanted: Wanted) -> Result<Fetched, ResponseError> {
        let store = self.store();
        let committed = blocking(move || store.fetch(&group)).await?;
        let mut by_topic: BTreeMap<String, BTreeMap<i32, OffsetCommitEntry>> = BTreeMap::new();
        for entry in committed {
            by_topic
                .entry(entry.topic.clone())
                .or_default()
                .insert(entry.partition, entry);
        }
        Ok(match wanted {
            None => by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    let partitions = partitions.into_iter().map(|(p, e)| (p, Some(e))).collect();
                    (topic, partitions)
                })
                .collect(),
            Some(wanted) => wanted
                .into_iter()
                .map(|(topic, partitions)| {
                    let committed = by_topic.get(&topic);
                    let partitions = partitions
                        .into_iter()
                        .map(|p| (p, committed.and_then(|c| c.get(&p)).cloned()))
                        .collect();
                    (topic, partitions)
                })
                .collect(),
        })
    }

    /// OffsetDelete v0. An active consumer group keeps the offsets of topics
    /// it subscribes to (GROUP_SUBSCRIBED_TO_TOPIC); an active group of
    /// another protocol is refused (NON_EMPTY_GROUP).
    #[tracing::instrument(level = "debug", skip_all, fields(group = %req.group_id.as_str(), version = version))]
    pub async fn offset_delete(
        &self,
        req: OffsetDeleteRequest,
        version: i16,
    ) -> OffsetDeleteResponse {
        let group = req.group_id.to_string();
        let mut resp = OffsetDeleteResponse::default();
        let handle = self.handle(&group, false);
        let _no_commits_meanwhile = match &handle {
            Some(handle) => Some(handle.offset_writes.lock().await),
            None => None,
        };
        let scope = match &handle {
            Some(handle) => handle
                .ask(|reply| Command::OffsetDeleteScope { reply })
                .await
                .unwrap_or(Ok(OffsetDeleteScope::Any)),
            None => {
                let store = self.store();
                let owned = group.clone();
                match blocking(move || store.fetch(&owned).is_empty()).await {
                    Ok(true) => Err(ResponseError::GroupIdNotFound),
                    Ok(false) => Ok(OffsetDeleteScope::Any),
                    Err(error) => Err(error),
                }
            }
        };
        let subscribed = match scope {
            Err(error) => {
                resp.error_code = error.code();
                return resp;
            }
            Ok(OffsetDeleteScope::Any) => BTreeSet::new(),
            Ok(OffsetDeleteScope::ExceptTopics(topics)) => topics,
        };

        let topics: Vec<(String, Vec<i32>)> = req
            .topics
            .iter()
            .map(|t| {
                let partitions = t.partitions.iter().map(|p| p.partition_index).collect();
                (t.name.to_string(), partitions)
            })
            .collect();
        let store = self.store();
        let per_topic = blocking(move || {
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    if !store.topic_exists(&topic) {
                        return Err(ResponseError::UnknownTopicOrPartition);
                    }
                    if subscribed.contains(&topic) {
                        return Err(ResponseError::GroupSubscribedToTopic);
                    }
                    store
                        .delete_offsets(&group, &topic, &partitions)
                        .map_err(|error| {
                            tracing::warn!(%error, "offset delete failed");
                            ResponseError::CoordinatorNotAvailable
                        })
                })
                .collect::<Vec<_>>()
        })
        .await;
        let per_topic = match per_topic {
            Ok(per_topic) => per_topic,
            Err(error) => {
                resp.error_code = error.code();
                return resp;
            }
        };
        for (topic, result) in req.topics.into_iter().zip(per_topic) {
            let mut out = OffsetDeleteResponseTopic::default();
            for p in &topic.partitions {
                let mut partition = OffsetDeleteResponsePartition::default();
                partition.partition_index = p.partition_index;
                partition.error_code = crate::wire::code(result);
                out.partitions.push(partition);
            }
            out.name = topic.name;
            resp.topics.push(out);
        }
        resp
    }
}

/// The (offset, leader epoch, metadata) a fetch reports; -1/-1/"" when nothing
/// is committed, as Kafka does.
fn reported(entry: Option<OffsetCommitEntry>) -> (i64, i32, String) {
    entry.map_or((-1, -1, String::new()), |e| {
        (e.offset, e.leader_epoch, e.metadata)
    })
}

fn v1_topics(fetched: Fetched) -> Vec<OffsetFetchResponseTopic> {
    fetched
        .into_iter()
        .map(|(topic, partitions)| {
            let mut out = OffsetFetchResponseTopic::default();
            out.name = TopicName(str_bytes(topic));
            out.partitions = partitions
                .into_iter()
                .map(|(index, entry)| {
                    let (offset, epoch, metadata) = reported(entry);
                    let mut p = OffsetFetchResponsePartition::default();
                    p.partition_index = index;
                    p.committed_offset = offset;
                    p.committed_leader_epoch = epoch;
                    p.metadata = Some(str_bytes(metadata));
                    p
                })
                .collect();
            out
        })
        .collect()
}

fn v8_topics(fetched: Fetched) -> Vec<OffsetFetchResponseTopics> {
    fetched
        .into_iter()
        .map(|(topic, partitions)| {
            let mut out = OffsetFetchResponseTopics::default();
            out.name = TopicName(str_bytes(topic));
            out.partitions = partitions
                .into_iter()
                .map(|(index, entry)| {
                    let (offset, epoch, metadata) = reported(entry);
                    let mut p = OffsetFetchResponsePartitions::default();
                    p.partition_index = index;
                    p.committed_offset = offset;
                    p.committed_leader_epoch = epoch;
                    p.metadata = Some(str_bytes(metadata));
                    p
                })
                .collect();
            out
        })
        .collect()
}
