//! Fixture loading shared by the operator's integration tests: a fixture is
//! a KafkaCluster as a user writes it plus the Secrets the dereference step
//! would have read.
#![allow(dead_code)]

use std::path::PathBuf;

use floe_crds::KafkaCluster;
use floe_operator::reconcile::dereference::Referenced;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use serde_json::Value;

pub fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(sub)
}

/// A fixture: the KafkaCluster and what dereferencing it found.
pub fn load(name: &str) -> (KafkaCluster, Referenced) {
    let path = dir("fixtures").join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut cluster: Option<KafkaCluster> = None;
    let mut referenced = Referenced::default();
    let mut secrets = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let value = Value::deserialize(doc).expect("fixture is YAML");
        match value["kind"].as_str() {
            Some("KafkaCluster") => {
                cluster = Some(serde_json::from_value(value).expect("a KafkaCluster"))
            }
            Some("Secret") => {
                secrets.push(serde_json::from_value::<Secret>(value).expect("a Secret"))
            }
            other => panic!("{name}: unexpected document kind {other:?}"),
        }
    }
    let cluster: KafkaCluster = cluster.expect("fixture has a KafkaCluster");
    // The TLS Secret is the one the spec names there; any other is the
    // credentials Secret.
    let tls = cluster.spec.controllers.tls.as_ref();
    let tls_name = tls.map(|t| t.secret_name.clone());
    let broker_tls_name = tls.and_then(|t| t.broker_secret_name.clone());
    for secret in secrets {
        if secret.metadata.name.is_some() && secret.metadata.name == tls_name {
            referenced.tls_secret = Some(secret);
        } else if secret.metadata.name.is_some() && secret.metadata.name == broker_tls_name {
            referenced.broker_tls_secret = Some(secret);
        } else {
            referenced.credentials_secret = Some(secret);
        }
    }
    (cluster, referenced)
}
