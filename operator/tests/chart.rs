//! The Helm chart and its examples against the Rust types: the chart's CRD
//! is the generated one, and every example KafkaCluster passes the
//! operator's own validation (the CRD's CEL rules and what the schema cannot
//! see) and builds its children.
//!
//! `FLOE_UPDATE_CRDS=1 cargo test -p floe-operator --test chart` rewrites the
//! chart's copy from `crds/kafkacluster.yaml`.

use std::path::PathBuf;

use floe_crds::KafkaCluster;
use floe_operator::reconcile::build::build;
use floe_operator::reconcile::dereference::Referenced;
use floe_operator::reconcile::validate::validate;
use serde::Deserialize;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_charts_crd_is_the_generated_one() {
    let generated = std::fs::read_to_string(root().join("crds/kafkacluster.yaml")).unwrap();
    let copy_path = root().join("charts/floe-operator/crds/kafkacluster.yaml");
    if std::env::var_os("FLOE_UPDATE_CRDS").is_some() {
        std::fs::write(&copy_path, &generated).unwrap();
    }
    let copy = std::fs::read_to_string(&copy_path).unwrap();
    assert!(
        copy == generated,
        "{} differs from crds/kafkacluster.yaml; run FLOE_UPDATE_CRDS=1 cargo test -p floe-operator --test chart",
        copy_path.display()
    );
}

#[test]
fn every_example_cluster_is_valid_and_builds() {
    let mut clusters = 0;
    for entry in std::fs::read_dir(root().join("charts/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap();
            if value["kind"] != "KafkaCluster" {
                continue;
            }
            let mut cluster: KafkaCluster =
                serde_json::from_value(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // As read from the API server: with a uid.
            cluster.metadata.uid = Some("00000000-0000-4000-8000-000000000000".into());
            let valid = validate(&cluster, &Referenced::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!build(&valid).in_apply_order().is_empty());
            clusters += 1;
        }
    }
    assert!(clusters >= 2, "the examples hold KafkaClusters");
}
