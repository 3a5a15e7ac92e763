//! Invalid specs from YAML fixtures must fail validation with exactly the
//! expected problems, and the examples in docs/operator.md must be valid.

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::load;
use floe_crds::KafkaCluster;
use floe_operator::reconcile::dereference::Referenced;
use std::path::PathBuf;

use floe_operator::reconcile::build::build;
use floe_operator::reconcile::validate::validate;
use serde_json::json;

/// (fixture, [(field, text the message must contain)]): exactly these problems.
const INVALID: &[(&str, &[(&str, &str)])] = &[
    ("invalid-even-quorum", &[("spec.controllers.replicas", "4 is not a Raft quorum size: use 1 (development), 3 or 5")]),
    ("invalid-replicas-above-max", &[("spec.brokers.replicas", "9 is above brokers.maxReplicas (6)")]),
    (
        "invalid-missing-secret",
        &[(
            "spec.objectStorage.credentialsSecret.name",
            "Secret \"minio-credentials\" not found in namespace \"streaming\": create it with the keys \"AWS_ACCESS_KEY_ID\" and \"AWS_SECRET_ACCESS_KEY\"",
        )],
    ),
    (
        "invalid-secret-missing-key",
        &[(
            "spec.objectStorage.credentialsSecret.secretAccessKeyKey",
            "Secret \"s3\" has no non-empty key \"AWS_SECRET_ACCESS_KEY\" (it has: AWS_ACCESS_KEY_ID, aws_secret_access_key)",
        )],
    ),
    (
        "invalid-endpoint-without-credentials",
        &[("spec.objectStorage.credentialsSecret", "required when objectStorage.endpoint is set")],
    ),
    (
        "invalid-tls-secret",
        &[
            ("spec.controllers.tls.secretName", "Secret \"events-controller-tls\" has no non-empty key \"ca.crt\""),
            ("spec.controllers.tls.secretName", "Secret \"events-controller-tls\" key \"tls.key\" is not a PEM PRIVATE KEY"),
        ],
    ),
    (
        "invalid-tls-missing-secret",
        &[(
            "spec.controllers.tls.secretName",
            "Secret \"events-controller-tls\" not found in namespace \"streaming\": create it",
        )],
    ),
    (
        "invalid-tls-broker-secret",
        &[(
            "spec.controllers.tls.brokerSecretName",
            "Secret \"events-broker-tls\" not found in namespace \"streaming\": create it",
        )],
    ),
    ("invalid-spot-without-selector", &[("spec.spot.nodeSelector", "required when spot.enabled is true")]),
    ("invalid-name", &[("metadata.name", "\"events.prod\" must be at most 40 lowercase letters, digits and '-'")]),
    (
        "invalid-many",
        &[
            ("spec.controllers.rebalance.intervalSeconds", "-5 is negative"),
            ("spec.brokers.walVolume.size", "\"20GB\" is not a quantity"),
            ("spec.brokers.resources.requests.cpu", "4 is above limits.cpu (2)"),
            ("spec.objectStorage.bucket", "\"My_Bucket\" is not an S3 bucket name"),
            ("spec.objectStorage.prefix", "without empty, '.' or '..' segments"),
            ("spec.listeners.port", "8080 is the port Floe pods serve health and metrics on"),
            ("spec.listeners.advertisedHost", "unknown placeholder {zone}"),
            ("spec.podTemplate.labels", "\"app.kubernetes.io/name\" uses a prefix the operator owns"),
        ],
    ),
];

#[test]
fn invalid_fixtures_report_exactly_their_problems() {
    for (name, expected) in INVALID {
        let (cluster, referenced) = load(name);
        let err = validate(&cluster, &referenced).expect_err(name);
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        let expected_fields: Vec<&str> = expected.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, expected_fields, "{name}: {err}");
        for (problem, (_, text)) in err.problems.iter().zip(expected.iter()) {
            assert!(
                problem.message.contains(text),
                "{name}: {problem} lacks {text:?}"
            );
        }
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!(
                "KafkaCluster streaming/{} is invalid; fix the spec",
                cluster.metadata.name.as_deref().unwrap()
            )),
            "{shown}"
        );
    }
}

#[test]
fn the_secret_must_be_the_one_the_spec_names() {
    // The dereference step returned some other Secret: treat as missing.
    let (cluster, mut referenced) = load("full");
    referenced
        .credentials_secret
        .as_mut()
        .unwrap()
        .metadata
        .name = Some("other".into());
    let err = validate(&cluster, &referenced).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert!(
        err.problems[0]
            .message
            .contains("\"minio-credentials\" not found"),
        "{err}"
    );
}

#[test]
fn objects_not_read_from_the_api_server_are_refused() {
    let (mut cluster, referenced) = load("minimal");
    cluster.metadata.uid = None;
    cluster.metadata.namespace = None;
    let err = validate(&cluster, &referenced).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["metadata.namespace", "metadata.uid"]);
}

#[test]
fn spot_selector_must_not_contradict_the_pod_template() {
    let (mut cluster, referenced) = load("spot");
    cluster
        .spec
        .pod_template
        .node_selector
        .insert("karpenter.sh/capacity-type".into(), "on-demand".into());
    let err = validate(&cluster, &referenced).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].field, "spec.spot.nodeSelector");
    assert!(
        err.problems[0]
            .message
            .contains("contradicts podTemplate.nodeSelector"),
        "{err}"
    );
}

#[test]
fn advertised_hosts_must_be_per_broker_dns_names() {
    let (mut cluster, referenced) = load("minimal");
    for (template, expected) in [
        ("kafka.example.com", Some("must contain {pod} or {ordinal}")),
        ("{pod}_x.example.com", Some("which is not a DNS name")),
        ("{pod}.{service", Some("without a matching")),
        ("b-{ordinal}.{namespace}.example.com", None),
        ("{pod}.{service}.{namespace}.svc.cluster.local", None),
    ] {
        cluster.spec.listeners.advertised_host = template.into();
        match (validate(&cluster, &referenced), expected) {
            (Ok(v), None) => assert!(v.listener.advertised_host.contains("$(")),
            (Err(e), Some(text)) => assert!(e.to_string().contains(text), "{template}: {e}"),
            (result, _) => panic!("{template}: unexpected {result:?}"),
        }
    }
}

#[test]
fn the_examples_in_docs_operator_md_are_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/operator.md");
    let doc = std::fs::read_to_string(&path).expect("docs/operator.md");
    let examples: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .filter(|block| block.contains("kind: KafkaCluster"))
        .collect();
    assert_eq!(examples.len(), 2, "a minimal and a full example");
    for example in examples {
        let mut cluster: KafkaCluster = serde_norway::from_str(example).expect("example parses");
        // What the API server adds on creation.
        cluster.metadata.uid = Some("00000000-0000-4000-8000-000000000000".into());
        // The full example names a Secret; give the dereference step one.
        let referenced = Referenced {
            tls_secret: None,
            broker_tls_secret: None,
            credentials_secret: cluster.spec.object_storage.credentials_secret.as_ref().map(|c| {
                serde_json::from_value(json!({
                    "metadata": {"name": c.name},
                    "data": {c.access_key_id_key.clone(): "YQ==", c.secret_access_key_key.clone(): "Yg=="},
                }))
                .unwrap()
            }),
        };
        let validated =
            validate(&cluster, &referenced).unwrap_or_else(|e| panic!("{e}\n{example}"));
        assert!(!build(&validated).manifests().is_empty());
    }
}

#[test]
fn the_brokers_tls_secret_must_be_their_own() {
    let (mut cluster, referenced) = load("tls");
    let tls = cluster.spec.controllers.tls.as_mut().unwrap();
    tls.broker_secret_name = Some(tls.secret_name.clone());
    let err = validate(&cluster, &referenced).expect_err("the same Secret twice");
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(
        err.problems[0].field,
        "spec.controllers.tls.brokerSecretName"
    );
    assert!(
        err.problems[0]
            .message
            .contains("must differ from secretName"),
        "{err}"
    );
}
