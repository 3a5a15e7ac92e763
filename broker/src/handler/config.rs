//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topic
//! configs (stored by the controller) and the broker's read-only settings.

use std::collections::BTreeMap;

use floe_controller::model::Command;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::{code, str_bytes};
use crate::broker::Broker;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Config sources as Kafka numbers them.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Topic configs we understand, with Kafka's defaults.
pub const TOPIC_DEFAULTS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("compression.type", "producer"),
    ("max.message.bytes", "1048588"),
    ("message.timestamp.type", "CreateTime"),
    ("min.insync.replicas", "1"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
    ("segment.bytes", "1073741824"),
    ("segment.ms", "604800000"),
];

/// Check a topic config's name and value; the error says what is accepted.
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), String> {
    let number = |min: i64| {
        value
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= min)
            .map(|_| ())
            .ok_or_else(|| format!("{key} must be an integer >= {min}, got {value:?}"))
    };
    match key {
        "retention.ms" | "retention.bytes" => number(-1),
        "max.message.bytes" | "segment.bytes" | "segment.ms" | "min.insync.replicas" => number(1),
        "cleanup.policy" => match value {
            "delete" | "compact" | "compact,delete" | "delete,compact" => Ok(()),
            _ => Err(format!(
                "cleanup.policy must be delete, compact or both, got {value:?}"
            )),
        },
        "compression.type" => match value {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
            _ => Err(format!("unknown compression.type {value:?}")),
        },
        "message.timestamp.type" => match value {
            "CreateTime" => Ok(()),
            _ => Err("only message.timestamp.type=CreateTime is supported".into()),
        },
        _ => Err(format!(
            "unknown topic config {key:?}; supported: {}",
            TOPIC_DEFAULTS
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn entry(name: &str, value: &str, source: i8, read_only: bool) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(name);
    e.value = Some(str_bytes(value));
    e.config_source = source;
    e.read_only = read_only;
    e
}

fn broker_settings(b: &Broker) -> Vec<(String, String)> {
    let c = &b.config;
    vec![
        ("broker.id".into(), c.node_id.to_string()),
        (
            "auto.create.topics.enable".into(),
            c.auto_create_topics.to_string(),
        ),
        ("num.partitions".into(), c.default_partitions.to_string()),
        (
            "socket.request.max.bytes".into(),
            c.max_request_bytes.to_string(),
        ),
        (
            "advertised.listeners".into(),
            format!("PLAINTEXT://{}:{}", c.advertised_host, c.advertised_port),
        ),
        ("default.replication.factor".into(), "1".into()),
    ]
}

pub fn describe_configs(
    b: &Broker,
    req: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let mut r = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let wanted = |k: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|w| w.as_str() == k))
        };
        match res.resource_type {
            RESOURCE_TOPIC => match b.cluster.topic(res.resource_name.as_str()) {
                None => out.error_code = code(ResponseError::UnknownTopicOrPartition),
                Some(t) => {
                    for (k, default) in TOPIC_DEFAULTS {
                        if !wanted(k) {
                            continue;
                        }
                        out.configs.push(match t.configs.get(*k) {
                            Some(v) => entry(k, v, SOURCE_TOPIC, false),
                            None => entry(k, default, SOURCE_DEFAULT, false),
                        });
                    }
                }
            },
            RESOURCE_BROKER => {
                let me = b.config.node_id.to_string();
                if !res.resource_name.is_empty() && res.resource_name.as_str() != me {
                    out.error_code = code(ResponseError::InvalidRequest);
                    out.error_message = Some(str_bytes(format!("this is broker {me}")));
                } else {
                    for (k, v) in broker_settings(b) {
                        if wanted(&k) {
                            out.configs.push(entry(&k, &v, SOURCE_STATIC_BROKER, true));
                        }
                    }
                }
            }
            other => {
                out.error_code = code(ResponseError::InvalidRequest);
                out.error_message = Some(str_bytes(format!(
                    "resource type {other} has no configs here"
                )));
            }
        }
        r.results.push(out);
    }
    r
}

/// Apply `set`/`delete` to a topic's configs after validating every value.
async fn change_topic(
    b: &Broker,
    name: &str,
    set: BTreeMap<String, String>,
    delete: Vec<String>,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    if b.cluster.topic(name).is_none() {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        ));
    }
    for (k, v) in &set {
        validate_topic_config(k, v).map_err(|m| (ResponseError::InvalidConfig, m))?;
    }
    for k in &delete {
        if !TOPIC_DEFAULTS.iter().any(|(d, _)| d == k) {
            return Err((
                ResponseError::InvalidConfig,
                format!("unknown topic config {k:?}"),
            ));
        }
    }
    if validate_only {
        return Ok(());
    }
    b.cluster
        .propose(Command::AlterTopicConfigs {
            name: name.to_owned(),
            set,
            delete,
        })
        .await
        .map(|_| ())
        .map_err(|e| (ResponseError::InvalidRequest, e.to_string()))
}

pub async fn alter_configs(b: &Broker, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut r = AlterConfigsResponse::default();
    for res in req.resources {
        let mut out = alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let result = if res.resource_type == RESOURCE_TOPIC {
            let name = res.resource_name.to_string();
            // AlterConfigs replaces the whole set: unspecified keys return to defaults.
            let current: Vec<String> = b
                .cluster
                .topic(&name)
                .map(|t| t.configs.into_keys().collect())
                .unwrap_or_default();
            let mut set = BTreeMap::new();
            for c in res.configs {
                if let Some(v) = c.value {
                    set.insert(c.name.to_string(), v.to_string());
                }
            }
            let delete = current
                .into_iter()
                .filter(|k| !set.contains_key(k))
                .collect();
            change_topic(b, &name, set, delete, req.validate_only).await
        } else {
            Err((
                ResponseError::InvalidRequest,
                "only topic configs can be altered; broker settings are flags".into(),
            ))
        };
        if let Err((e, msg)) = result {
            out.error_code = code(e);
            out.error_message = Some(str_bytes(msg));
        }
        r.responses.push(out);
    }
    r
}

pub async fn incremental_alter_configs(
    b: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut r = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut out = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let result = if res.resource_type == RESOURCE_TOPIC {
            let mut set = BTreeMap::new();
            let mut delete = Vec::new();
            let mut bad = None;
            for c in res.configs {
                let key = c.name.to_string();
                match (c.config_operation, c.value) {
                    (0, Some(v)) => {
                        set.insert(key, v.to_string());
                    }
                    (1, _) => delete.push(key),
                    (op, _) => {
                        bad = Some(format!(
                            "operation {op} on {key} is not supported (use SET or DELETE)"
                        ))
                    }
                }
            }
            match bad {
                Some(m) => Err((ResponseError::InvalidConfig, m)),
                None => {
                    change_topic(
                        b,
                        res.resource_name.as_str(),
                        set,
                        delete,
                        req.validate_only,
                    )
                    .await
                }
            }
        } else {
            Err((
                ResponseError::InvalidRequest,
                "only topic configs can be altered; broker settings are flags".into(),
            ))
        };
        if let Err((e, msg)) = result {
            out.error_code = code(e);
            out.error_message = Some(str_bytes(msg));
        }
        r.responses.push(out);
    }
    r
}
