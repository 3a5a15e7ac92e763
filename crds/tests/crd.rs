//! The generated CRD: drift against the committed YAML, its shape (scale,
//! status, printer columns), and its CEL rules evaluated offline with kube-cel
//! against valid and invalid resources, with schema defaults applied the way
//! the API server applies them.

use std::path::PathBuf;

use floe_crds::{KafkaClusterSpec, WalMode};
use kube_cel::{
    analyze_rule, apply_defaults, compile_schema, AnalysisWarning, CompiledSchema, ScopeContext,
    Validator, WarningKind,
};
use serde_json::{json, Value};

const HEADER: &str =
    "# Generated from crds/src by `FLOE_UPDATE_CRDS=1 cargo test -p floe-crds`; do not edit.\n";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafkacluster.yaml")
}

fn generated_yaml() -> String {
    format!(
        "{HEADER}{}",
        serde_norway::to_string(&floe_crds::crd()).expect("the CRD serializes to YAML")
    )
}

#[test]
fn committed_crd_matches_the_rust_types() {
    let generated = generated_yaml();
    let path = committed_path();
    if std::env::var_os("FLOE_UPDATE_CRDS").is_some() {
        std::fs::write(&path, &generated).expect("write crds/kafkacluster.yaml");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the Rust types in crds/src.\n\
         Regenerate it with: FLOE_UPDATE_CRDS=1 cargo test -p floe-crds\n\
         and commit the result.",
        path.display()
    );
}

#[test]
fn committed_yaml_parses_back_to_the_same_crd() {
    let text = std::fs::read_to_string(committed_path()).expect("crds/kafkacluster.yaml exists");
    let parsed: Value = serde_norway::from_str(&text).expect("valid YAML");
    assert_eq!(parsed, serde_json::to_value(floe_crds::crd()).unwrap());
}

fn version() -> Value {
    serde_json::to_value(floe_crds::crd()).unwrap()["spec"]["versions"][0].clone()
}

fn schema() -> Value {
    version()["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn crd_identity_subresources_and_columns() {
    let crd = serde_json::to_value(floe_crds::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "kafkaclusters.floe.dev");
    assert_eq!(crd["spec"]["group"], "floe.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "KafkaCluster");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["kc"]));
    let v = version();
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert_eq!(v["subresources"]["status"], json!({}));
    assert_eq!(
        v["subresources"]["scale"],
        json!({
            "specReplicasPath": ".spec.brokers.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        })
    );
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Brokers", "Ready", "WAL mode", "Age"]);
    let s = schema();
    assert_eq!(
        s["properties"]["spec"]["properties"]["brokers"]["properties"]["walMode"]["enum"],
        json!(["volume", "object"])
    );
    assert_eq!(
        s["properties"]["spec"]["properties"]["reclaimPolicy"]["enum"],
        json!(["Retain", "Delete"])
    );
    let conditions = &s["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
}

/// Every `x-kubernetes-validations` rule in the schema, with its schema node.
fn rules(node: &Value, path: &str, out: &mut Vec<(String, String, Value)>) {
    if let Some(list) = node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for r in list {
            out.push((
                path.to_string(),
                r["rule"].as_str().unwrap().to_string(),
                node.clone(),
            ));
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            rules(v, &format!("{path}.{k}"), out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v) = node.get(key).filter(|v| v.is_object()) {
            rules(v, &format!("{path}[{key}]"), out);
        }
    }
}

#[test]
fn cel_rules_compile_and_fit_the_cost_budget() {
    let schema = schema();
    let compiled: CompiledSchema = compile_schema(&schema);
    let errors: Vec<String> = compiled
        .compilation_errors()
        .iter()
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(
        errors.is_empty(),
        "CEL rules that do not compile: {errors:#?}"
    );
    let mut all = Vec::new();
    rules(&schema, "", &mut all);
    assert!(
        all.len() >= 14,
        "expected the CRD's CEL rules, found {}",
        all.len()
    );
    for (path, rule, node) in all {
        let warnings: Vec<_> =
            analyze_rule(&rule, &compile_schema(&node), ScopeContext::CrdValidation)
                .into_iter()
                .filter(|w| !binds_comprehension_variable(&rule, w))
                .collect();
        assert!(
            warnings.is_empty(),
            "rule {rule:?} at {path}: {warnings:#?}"
        );
    }
}

/// kube-cel's scope check reports the variable of a macro such as
/// `self.all(k, ...)` as unknown; the API server binds it.
fn binds_comprehension_variable(rule: &str, warning: &AnalysisWarning) -> bool {
    warning.kind == WarningKind::WrongScope
        && warning
            .message
            .split('\'')
            .nth(1)
            .is_some_and(|var| rule.contains(&format!("({var},")))
}

fn cluster(spec: Value) -> Value {
    json!({
        "apiVersion": "floe.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": {"name": "events", "namespace": "streaming"},
        "spec": spec,
    })
}

fn minimal_spec() -> Value {
    json!({"objectStorage": {"bucket": "floe-data"}})
}

/// Runs the CRD's CEL rules as the API server would, defaults applied first.
fn cel(object: &Value, old: Option<&Value>) -> Result<(), Vec<String>> {
    Validator::new()
        .validate(&schema(), object, old)
        .map_err(|errors| errors.into_vec().iter().map(|e| e.to_string()).collect())
}

fn with(mut spec: Value, pointer: &str, value: Value) -> Value {
    let mut target = &mut spec;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for part in &parts[..parts.len() - 1] {
        if target.get(*part).is_none() {
            target[*part] = json!({});
        }
        target = target.get_mut(*part).unwrap();
    }
    target[*parts.last().unwrap()] = value;
    spec
}

#[test]
fn a_minimal_spec_passes_and_defaults_match_serde_defaults() {
    let object = cluster(minimal_spec());
    cel(&object, None).expect("the minimal spec is valid");

    // What the API server stores after defaulting, read by the operator, must
    // equal what serde's defaults give for the same few lines.
    let defaulted = apply_defaults(&schema(), &object);
    let from_schema: KafkaClusterSpec = serde_json::from_value(defaulted["spec"].clone()).unwrap();
    let from_serde: KafkaClusterSpec = serde_json::from_value(minimal_spec()).unwrap();
    assert_eq!(from_schema, from_serde);
    assert_eq!(from_serde.controllers.replicas, 3);
    assert_eq!(from_serde.brokers.replicas, 3);
    assert_eq!(from_serde.brokers.wal_mode, WalMode::Volume);
    assert_eq!(from_serde.brokers.wal_volume.size.0, "20Gi");
    assert_eq!(from_serde.controllers.storage.size.0, "10Gi");
    assert_eq!(from_serde.listeners.port, 9092);
    assert!(from_serde.zone_spread.enabled);
    assert!(!from_serde.spot.enabled);
    // The defaults really are in the schema, not only in serde.
    assert_eq!(defaulted["spec"]["brokers"]["walMode"], "volume");
    assert_eq!(defaulted["spec"]["reclaimPolicy"], "Retain");
    assert_eq!(
        defaulted["spec"]["listeners"]["advertisedHost"],
        "{pod}.{service}.{namespace}.svc"
    );
}

#[test]
fn a_full_spec_passes() {
    let spec = json!({
        "image": "ghcr.io/floe-dev/floe:0.1.0",
        "imagePullPolicy": "IfNotPresent",
        "controllers": {"replicas": 5, "storage": {"size": "5Gi", "storageClassName": "gp3"}},
        "brokers": {"replicas": 4, "minReplicas": 2, "maxReplicas": 12, "walMode": "object"},
        "objectStorage": {
            "bucket": "floe-data", "prefix": "prod", "region": "eu-west-1",
            "endpoint": "https://s3.eu-west-1.amazonaws.com",
            "credentialsSecret": {"name": "floe-s3"}
        },
        "listeners": {"port": 9094, "advertisedHost": "broker-{ordinal}.kafka.example.com"},
        "spot": {"enabled": true, "nodeSelector": {"karpenter.sh/capacity-type": "spot"}, "onDemandBrokers": 1},
        "podTemplate": {"labels": {"team": "data"}, "annotations": {"example.com/owner": "data"}},
        "reclaimPolicy": "Delete"
    });
    cel(&cluster(spec), None).expect("the full spec is valid");
}

/// (case, spec change, text the API server's message must contain)
fn invalid_cases() -> Vec<(&'static str, Value, &'static str)> {
    let m = minimal_spec;
    vec![
        (
            "even quorum",
            with(m(), "/controllers/replicas", json!(4)),
            "must be odd",
        ),
        (
            "replicas above maxReplicas",
            with(
                with(m(), "/brokers/replicas", json!(9)),
                "/brokers/maxReplicas",
                json!(6),
            ),
            "brokers.replicas (9) is above brokers.maxReplicas (6)",
        ),
        (
            "replicas below minReplicas",
            with(
                with(m(), "/brokers/replicas", json!(2)),
                "/brokers/minReplicas",
                json!(3),
            ),
            "brokers.replicas (2) is below brokers.minReplicas (3)",
        ),
        (
            "endpoint without credentials",
            with(
                m(),
                "/objectStorage/endpoint",
                json!("http://minio.storage:9000"),
            ),
            "credentialsSecret is required",
        ),
        (
            "endpoint that is not a URL",
            with(
                with(m(), "/objectStorage/endpoint", json!("minio:9000")),
                "/objectStorage/credentialsSecret",
                json!({"name": "s3"}),
            ),
            "http:// or https://",
        ),
        (
            "spot without node selector",
            with(m(), "/spot/enabled", json!(true)),
            "spot.nodeSelector is required",
        ),
        (
            "advertised host shared by all brokers",
            with(m(), "/listeners/advertisedHost", json!("kafka.example.com")),
            "must contain {pod} or {ordinal}",
        ),
        (
            "listener on the health port",
            with(m(), "/listeners/port", json!(8080)),
            "must not be 8080",
        ),
        (
            "reserved label prefix",
            with(
                m(),
                "/podTemplate/labels",
                json!({"app.kubernetes.io/name": "x"}),
            ),
            "podTemplate.labels must not use",
        ),
        (
            "empty image",
            with(m(), "/image", json!("")),
            "image must not be empty",
        ),
    ]
}

#[test]
fn invalid_specs_are_refused_with_a_clear_message() {
    for (case, spec, expected) in invalid_cases() {
        let errors = cel(&cluster(spec), None).expect_err(case);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{case}: expected a message containing {expected:?}, got {errors:#?}"
        );
    }
}

#[test]
fn long_names_are_refused() {
    let mut object = cluster(minimal_spec());
    object["metadata"]["name"] = json!("a".repeat(41));
    let errors = cel(&object, None).expect_err("41 characters");
    assert!(
        errors.iter().any(|e| e.contains("at most 40")),
        "{errors:?}"
    );
    object["metadata"]["name"] = json!("a".repeat(40));
    cel(&object, None).expect("40 characters");
}

#[test]
fn immutable_fields_refuse_changes_and_accept_no_ops() {
    let old = cluster(minimal_spec());
    cel(&old, Some(&old)).expect("an unchanged object is valid");
    // Scaling brokers is the point of /scale: allowed.
    let scaled = cluster(with(minimal_spec(), "/brokers/replicas", json!(7)));
    cel(&scaled, Some(&old)).expect("scaling brokers is allowed");

    for (pointer, value, expected) in [
        ("/brokers/walMode", json!("object"), "walMode is immutable"),
        (
            "/brokers/walVolume",
            json!({"size": "50Gi"}),
            "walVolume is immutable",
        ),
        (
            "/controllers/replicas",
            json!(5),
            "controllers.replicas is immutable",
        ),
        (
            "/controllers/storage",
            json!({"size": "1Gi"}),
            "controllers.storage is immutable",
        ),
    ] {
        let new = cluster(with(minimal_spec(), pointer, value));
        // Creating with the value is fine; changing to it is not.
        cel(&new, None).unwrap_or_else(|e| panic!("{pointer} on create: {e:?}"));
        let errors = cel(&new, Some(&old)).expect_err(pointer);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{pointer}: {errors:?}"
        );
    }
}

#[test]
fn controller_tls_cannot_be_turned_on_off_or_pointed_elsewhere() {
    let plain = cluster(with(minimal_spec(), "/controllers/replicas", json!(3)));
    let tls = |name: &str| {
        cluster(with(
            with(minimal_spec(), "/controllers/replicas", json!(3)),
            "/controllers/tls",
            json!({"secretName": name}),
        ))
    };
    cel(&tls("a"), None).expect("a new cluster may use TLS");
    cel(&tls("a"), Some(&tls("a"))).expect("unchanged");
    for (old, new, expected) in [
        (&plain, &tls("a"), "cannot be turned on or off"),
        (&tls("a"), &plain, "cannot be turned on or off"),
        (&tls("a"), &tls("b"), "secretName is immutable"),
    ] {
        let errors = cel(new, Some(old)).expect_err(expected);
        assert!(errors.iter().any(|e| e.contains(expected)), "{errors:?}");
    }
}
