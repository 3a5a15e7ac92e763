//! validate → build from YAML fixtures (`tests/fixtures/*.yaml`: a
//! KafkaCluster as a user writes it, plus the Secrets the dereference step
//! would have read). Valid fixtures are built and checked twice: against a
//! committed golden rendering (`tests/golden/*.yaml`, regenerate with
//! `FLOE_UPDATE_GOLDEN=1 cargo test -p floe-operator`) and by assertions on
//! what matters (names, labels, owners, volumes, env, replicas, budgets).
//! Invalid fixtures must fail with exactly the expected problems.

use std::collections::BTreeMap;

use floe_operator::labels;
use floe_operator::reconcile::build::{build, config_hash, Children};
use floe_operator::reconcile::validate::{validate, ValidatedCluster, DEFAULT_IMAGE};
use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{json, Value};

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::{dir, load};

fn built(name: &str) -> (ValidatedCluster, Children) {
    let (cluster, referenced) = load(name);
    let validated = validate(&cluster, &referenced).unwrap_or_else(|e| panic!("{name}: {e}"));
    let children = build(&validated);
    (validated, children)
}

const VALID: [&str; 6] = [
    "minimal",
    "full",
    "object-mode",
    "spot",
    "tls",
    "tls-brokers",
];

fn to_yaml(children: &Children) -> String {
    children
        .manifests()
        .iter()
        .map(|m| serde_norway::to_string(m).expect("manifest serializes"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn built_objects_match_the_golden_renderings() {
    let update = std::env::var_os("FLOE_UPDATE_GOLDEN").is_some();
    for name in VALID {
        let (_, children) = built(name);
        let rendered = to_yaml(&children);
        let path = dir("golden").join(format!("{name}.yaml"));
        if update {
            std::fs::write(&path, &rendered).unwrap();
            continue;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            golden == rendered,
            "{} differs from what build() produces for fixtures/{name}.yaml.\n\
             If the change is intended, regenerate with: FLOE_UPDATE_GOLDEN=1 cargo test -p floe-operator\n\
             and review the diff.",
            path.display()
        );
    }
}

#[test]
fn build_is_deterministic() {
    for name in VALID {
        let (validated, first) = built(name);
        assert_eq!(first, build(&validated), "{name}");
        assert_eq!(to_yaml(&first), to_yaml(&build(&validated)), "{name}");
    }
}

/// Invariants every valid fixture's children must hold.
#[test]
fn every_child_is_owned_labelled_and_selects_its_own_pods() {
    for name in VALID {
        let (cluster, _) = load(name);
        let (v, children) = built(name);
        let uid = cluster.metadata.uid.clone().unwrap();
        for child in children.in_apply_order() {
            let what = format!("{name}: {} {}", child.kind(), child.name());
            let meta = child.metadata();
            assert_eq!(
                meta.namespace.as_deref(),
                Some(v.namespace.as_str()),
                "{what}"
            );
            let owners = meta.owner_references.as_ref().expect(&what);
            assert_eq!(owners.len(), 1, "{what}");
            let owner = &owners[0];
            assert_eq!(
                (
                    owner.api_version.as_str(),
                    owner.kind.as_str(),
                    owner.name.as_str(),
                    owner.uid.as_str()
                ),
                (
                    "floe.dev/v1alpha1",
                    "KafkaCluster",
                    v.name.as_str(),
                    uid.as_str()
                ),
                "{what}"
            );
            assert_eq!(owner.controller, Some(true), "{what}");
            let object_labels = meta.labels.as_ref().expect(&what);
            for (k, val) in labels::cluster_selector(&v.name) {
                assert_eq!(object_labels.get(&k), Some(&val), "{what}: label {k}");
            }
            assert!(child.name().len() <= 63, "{what}");
        }
        let sets =
            std::iter::once(&children.controller_statefulset).chain(&children.broker_statefulsets);
        for sts in sets {
            let selector = sts.spec.selector.match_labels.as_ref().unwrap();
            let pod_labels = pod_labels(sts);
            for (k, val) in selector {
                assert_eq!(
                    pod_labels.get(k),
                    Some(val),
                    "{name}: selector of {:?}",
                    sts.metadata.name
                );
            }
            let annotations = sts
                .spec
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap();
            assert_eq!(
                annotations[labels::CONFIG_HASH_ANNOTATION],
                config_hash(&children.config_map),
                "{name}: pods roll when the shared config changes"
            );
            let spec = sts.spec.template.spec.as_ref().unwrap();
            assert_eq!(spec.automount_service_account_token, Some(false));
            assert_eq!(
                spec.service_account_name,
                children.service_account.metadata.name
            );
            let env_from = &spec.containers[0].env_from.as_ref().unwrap()[0];
            assert_eq!(
                env_from.config_map_ref.as_ref().unwrap().name,
                children.config_map.metadata.name.clone().unwrap()
            );
        }
        // Every Service and PDB selects pods of its component, of this cluster.
        for svc in &children.services {
            let selector = svc.spec.as_ref().unwrap().selector.as_ref().unwrap();
            assert_eq!(selector[labels::INSTANCE], v.name, "{name}");
            assert!(selector.contains_key(labels::COMPONENT), "{name}");
        }
    }
}

fn manifest(children: &Children, kind: &str, name: &str) -> Value {
    children
        .in_apply_order()
        .into_iter()
        .find(|c| c.kind() == kind && c.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .to_manifest()
}

fn pod_labels(sts: &StatefulSet) -> BTreeMap<String, String> {
    sts.spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap()
}

/// The broker container's env, by name.
fn env(sts: &Value) -> BTreeMap<String, Value> {
    sts.pointer("/spec/template/spec/containers/0/env")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

fn data(children: &Children) -> BTreeMap<String, String> {
    children.config_map.data.clone().unwrap()
}

#[test]
fn minimal_spec_builds_a_default_cluster() {
    let (v, children) = built("minimal");
    let order: Vec<(String, String)> = children
        .in_apply_order()
        .iter()
        .map(|c| (c.kind().to_string(), c.name().to_string()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("ServiceAccount", "events-floe"),
        ("ConfigMap", "events-config"),
        ("Service", "events-controller-headless"),
        ("Service", "events-broker-headless"),
        ("Service", "events-bootstrap"),
        ("PodDisruptionBudget", "events-controller"),
        ("PodDisruptionBudget", "events-broker"),
        ("StatefulSet", "events-controller"),
        ("StatefulSet", "events-broker"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(order, expected);
    assert_eq!(v.image, DEFAULT_IMAGE);

    let cm = data(&children);
    assert_eq!(cm["FLOE_OBJECT_STORE"], "s3://floe-data/streaming/events");
    assert_eq!(cm["FLOE_WAL_MODE"], "volume");
    assert_eq!(cm["FLOE_LISTEN"], "0.0.0.0:9092");
    assert_eq!(
        cm["FLOE_CONTROLLERS"],
        "events-controller-0.events-controller-headless.streaming.svc:9094,\
         events-controller-1.events-controller-headless.streaming.svc:9094,\
         events-controller-2.events-controller-headless.streaming.svc:9094"
    );
    assert!(cm["FLOE_RAFT_PEERS"]
        .starts_with("0=events-controller-0.events-controller-headless.streaming.svc:9093,1="));
    assert!(!cm.contains_key("AWS_REGION") && !cm.contains_key("AWS_ENDPOINT_URL"));

    let controller = manifest(&children, "StatefulSet", "events-controller");
    assert_eq!(controller["spec"]["replicas"], 3);
    assert_eq!(
        controller["spec"]["serviceName"],
        "events-controller-headless"
    );
    assert_eq!(controller["spec"]["podManagementPolicy"], "Parallel");
    assert_eq!(
        controller["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["controller"])
    );
    let claim = &controller["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "raft-log");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "10Gi");
    assert!(claim["spec"].get("storageClassName").is_none());
    assert_eq!(
        controller["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(
        env(&controller)["FLOE_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );

    let broker = manifest(&children, "StatefulSet", "events-broker");
    assert_eq!(broker["spec"]["replicas"], 3);
    assert_eq!(broker["spec"]["serviceName"], "events-broker-headless");
    assert!(broker["spec"].get("ordinals").is_none());
    let pod = &broker["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], DEFAULT_IMAGE);
    assert_eq!(pod["containers"][0]["command"], json!(["floe"]));
    assert_eq!(pod["containers"][0]["args"], json!(["broker"]));
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0],
        json!({"name": "wal", "mountPath": "/var/lib/floe"})
    );
    assert!(
        pod.get("volumes").is_none(),
        "volume mode uses a claim, not a pod volume"
    );
    let claim = &broker["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "wal");
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "20Gi");
    assert_eq!(
        broker["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Delete"})
    );
    let env = env(&broker);
    assert_eq!(
        env["FLOE_ADVERTISED_LISTENER"]["value"],
        "$(POD_NAME).events-broker-headless.streaming.svc:9092"
    );
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env["FLOE_BROKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    assert_eq!(env["FLOE_DATA_DIR"]["value"], "/var/lib/floe");
    assert_eq!(env["FLOE_CAPACITY_TYPE"]["value"], "on-demand");
    assert!(
        !env.contains_key("AWS_ACCESS_KEY_ID"),
        "no Secret: ambient credentials"
    );
    // $(VAR) references only work for variables defined earlier in the list.
    let names: Vec<&String> = env.keys().collect();
    let position = |n: &str| {
        broker["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .position(|e| e["name"] == n)
            .unwrap()
    };
    assert!(
        position("POD_NAME") < position("FLOE_ADVERTISED_LISTENER"),
        "{names:?}"
    );
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(spread["whenUnsatisfiable"], "ScheduleAnyway");
    assert_eq!(spread["maxSkew"], 1);
    assert_eq!(
        spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "broker"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    assert_eq!(pod["terminationGracePeriodSeconds"], 90);

    let controller_pdb = manifest(&children, "PodDisruptionBudget", "events-controller");
    assert_eq!(controller_pdb["spec"]["minAvailable"], 2);
    assert_eq!(
        controller_pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "controller"
    );
    let broker_pdb = manifest(&children, "PodDisruptionBudget", "events-broker");
    assert_eq!(broker_pdb["spec"]["maxUnavailable"], 1);
    assert!(broker_pdb["spec"].get("minAvailable").is_none());

    let headless = manifest(&children, "Service", "events-broker-headless");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let bootstrap = manifest(&children, "Service", "events-bootstrap");
    assert_eq!(bootstrap["spec"]["type"], "ClusterIP");
    assert_eq!(
        bootstrap["spec"]["ports"],
        json!([{"name": "kafka", "port": 9092, "protocol": "TCP", "targetPort": "kafka"}])
    );
    let sa = manifest(&children, "ServiceAccount", "events-floe");
    assert_eq!(sa["automountServiceAccountToken"], false);
    assert!(sa["metadata"].get("annotations").is_none());
}

#[test]
fn full_spec_carries_every_setting_through() {
    let (_, children) = built("full");
    let cm = data(&children);
    assert_eq!(
        cm["FLOE_OBJECT_STORE"], "s3://acme-kafka/prod/payments",
        "prefix slashes trimmed"
    );
    assert_eq!(cm["AWS_REGION"], "eu-west-1");
    assert_eq!(cm["AWS_ENDPOINT_URL"], "http://minio.storage.svc:9000");
    assert_eq!(cm["FLOE_LISTEN"], "0.0.0.0:9093");
    assert_eq!(cm["FLOE_CONTROLLERS"].split(',').count(), 5);

    let controller = manifest(&children, "StatefulSet", "payments-controller");
    assert_eq!(controller["spec"]["replicas"], 5);
    let claim = &controller["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["storageClassName"], "fast-ssd");
    assert_eq!(claim["resources"]["requests"]["storage"], "5Gi");
    assert_eq!(
        controller["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}})
    );
    assert_eq!(
        manifest(&children, "PodDisruptionBudget", "payments-controller")["spec"]["minAvailable"],
        3
    );

    let broker = manifest(&children, "StatefulSet", "payments-broker");
    assert_eq!(broker["spec"]["replicas"], 4);
    let claim = &broker["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["storageClassName"], "io2");
    assert_eq!(claim["resources"]["requests"]["storage"], "50Gi");
    assert_eq!(
        broker["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Delete"
    );
    let env = env(&broker);
    assert_eq!(
        env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"],
        json!({"name": "minio-credentials", "key": "access-key", "optional": false})
    );
    assert_eq!(
        env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"],
        json!({"name": "minio-credentials", "key": "secret-key", "optional": false})
    );
    assert_eq!(
        env["FLOE_ADVERTISED_LISTENER"]["value"],
        "payments-$(FLOE_BROKER_ID).kafka.example.com:9093"
    );
    let pod = &broker["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example.com/floe:0.1.0");
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        container["ports"][0],
        json!({"name": "kafka", "containerPort": 9093, "protocol": "TCP"})
    );
    assert_eq!(container["resources"]["limits"]["cpu"], "4");
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/arch": "arm64"}));
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["priorityClassName"], "high");
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "registry-credentials"}])
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["whenUnsatisfiable"],
        "DoNotSchedule"
    );
    assert_eq!(pod["topologySpreadConstraints"][0]["maxSkew"], 2);
    let template_meta = &broker["spec"]["template"]["metadata"];
    assert_eq!(template_meta["labels"]["team"], "payments");
    assert_eq!(template_meta["annotations"]["prometheus.io/scrape"], "true");
    // Pod overrides apply to controllers too.
    assert_eq!(
        controller["spec"]["template"]["metadata"]["labels"]["team"],
        "payments"
    );
    assert_eq!(
        controller["spec"]["template"]["spec"]["priorityClassName"],
        "high"
    );
    // The Kafka port follows the listener everywhere.
    let bootstrap = manifest(&children, "Service", "payments-bootstrap");
    assert_eq!(bootstrap["spec"]["ports"][0]["port"], 9093);
    let sa = manifest(&children, "ServiceAccount", "payments-floe");
    assert_eq!(
        sa["metadata"]["annotations"]["example.com/owner"],
        "payments"
    );
}

#[test]
fn object_mode_uses_an_empty_dir_and_no_claims() {
    let (_, children) = built("object-mode");
    let broker = manifest(&children, "StatefulSet", "logs-broker");
    assert_eq!(broker["spec"]["replicas"], 2);
    assert!(broker["spec"].get("volumeClaimTemplates").is_none());
    assert!(broker["spec"]
        .get("persistentVolumeClaimRetentionPolicy")
        .is_none());
    assert_eq!(
        broker["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "wal", "emptyDir": {"sizeLimit": "2Gi"}}])
    );
    assert_eq!(
        broker["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"],
        "wal"
    );
    let cm = data(&children);
    assert_eq!(cm["FLOE_WAL_MODE"], "object");
    assert_eq!(
        cm["FLOE_OBJECT_STORE"], "s3://logs-bucket",
        "empty prefix: the bucket root"
    );
    assert_eq!(cm["AWS_REGION"], "us-west-2");
    // A single development controller gets no budget (it would block drains).
    let budgets: Vec<_> = children
        .pod_disruption_budgets
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(budgets, ["logs-broker"]);
    assert_eq!(children.controller_statefulset.spec.replicas, Some(1));
    // Zone spread off.
    assert!(broker["spec"]["template"]["spec"]
        .get("topologySpreadConstraints")
        .is_none());
    // Ambient credentials through IRSA.
    assert!(!env(&broker).contains_key("AWS_ACCESS_KEY_ID"));
    let sa = manifest(&children, "ServiceAccount", "logs-floe");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/floe-logs"
    );
}

#[test]
fn spot_splits_brokers_into_on_demand_and_spot_statefulsets() {
    let (_, children) = built("spot");
    let names: Vec<_> = children
        .broker_statefulsets
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["clicks-broker", "clicks-broker-spot"]);

    let on_demand = manifest(&children, "StatefulSet", "clicks-broker");
    assert_eq!(on_demand["spec"]["replicas"], 2);
    assert!(on_demand["spec"].get("ordinals").is_none());
    assert!(on_demand["spec"]["template"]["spec"]
        .get("nodeSelector")
        .is_none());
    assert!(on_demand["spec"]["template"]["spec"]
        .get("tolerations")
        .is_none());
    assert_eq!(
        on_demand["spec"]["selector"]["matchLabels"]["floe.dev/capacity"],
        "on-demand"
    );

    let spot = manifest(&children, "StatefulSet", "clicks-broker-spot");
    assert_eq!(spot["spec"]["replicas"], 3);
    assert_eq!(
        spot["spec"]["ordinals"]["start"], 2,
        "ids continue after the on-demand range"
    );
    assert_eq!(
        spot["spec"]["serviceName"], "clicks-broker-headless",
        "one DNS domain for all brokers"
    );
    let pod = &spot["spec"]["template"]["spec"];
    assert_eq!(
        pod["nodeSelector"],
        json!({"karpenter.sh/capacity-type": "spot"})
    );
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}])
    );
    assert_eq!(
        spot["spec"]["selector"]["matchLabels"]["floe.dev/capacity"],
        "spot"
    );
    assert_eq!(
        spot["spec"]["template"]["metadata"]["labels"]["floe.dev/capacity"],
        "spot"
    );
    assert_eq!(env(&spot)["FLOE_CAPACITY_TYPE"]["value"], "spot");
    // Both sets share the broker spread, PDB and Services (component selector).
    assert_eq!(
        pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
        on_demand["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"]
            ["matchLabels"]
    );
    let pdb = manifest(&children, "PodDisruptionBudget", "clicks-broker");
    assert!(pdb["spec"]["selector"]["matchLabels"]
        .get("floe.dev/capacity")
        .is_none());
    // Controllers never go to spot nodes.
    assert!(
        manifest(&children, "StatefulSet", "clicks-controller")["spec"]["template"]["spec"]
            .get("nodeSelector")
            .is_none()
    );
}

#[test]
fn scaling_below_on_demand_brokers_empties_the_spot_set_but_keeps_ordinals() {
    let (mut cluster, referenced) = load("spot");
    for (replicas, on_demand, spot) in [(1, 1, 0), (2, 2, 0), (3, 2, 1), (9, 2, 7)] {
        cluster.spec.brokers.replicas = replicas;
        let children = build(&validate(&cluster, &referenced).unwrap());
        let sets: Vec<(Option<i32>, Option<i32>)> = children
            .broker_statefulsets
            .iter()
            .map(|s| {
                (
                    s.spec.replicas,
                    s.spec.ordinals.as_ref().and_then(|o| o.start),
                )
            })
            .collect();
        assert_eq!(
            sets,
            [(Some(on_demand), None), (Some(spot), Some(2))],
            "replicas {replicas}"
        );
    }
    // All brokers on spot: no on-demand StatefulSet at all.
    cluster.spec.spot.on_demand_brokers = 0;
    let children = build(&validate(&cluster, &referenced).unwrap());
    let names: Vec<_> = children
        .broker_statefulsets
        .iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap(),
                s.spec.replicas,
                s.spec.ordinals.clone(),
            )
        })
        .collect();
    assert_eq!(names, [("clicks-broker-spot".to_string(), Some(9), None)]);
}

#[test]
fn a_config_change_changes_the_pod_template_hash() {
    let (mut cluster, referenced) = load("minimal");
    let before = build(&validate(&cluster, &referenced).unwrap());
    cluster.spec.object_storage.region = Some("eu-central-1".into());
    let after = build(&validate(&cluster, &referenced).unwrap());
    assert_ne!(
        config_hash(&before.config_map),
        config_hash(&after.config_map)
    );
    assert_ne!(
        before.broker_statefulsets[0].spec.template,
        after.broker_statefulsets[0].spec.template
    );
    // ...and a change that does not touch the config keeps it.
    cluster.spec.brokers.replicas = 6;
    let scaled = build(&validate(&cluster, &referenced).unwrap());
    assert_eq!(
        config_hash(&after.config_map),
        config_hash(&scaled.config_map)
    );
    assert_eq!(
        after.broker_statefulsets[0].spec.template,
        scaled.broker_statefulsets[0].spec.template
    );
}

#[test]
fn controller_tls_mounts_the_secret_in_every_pod_and_a_renewal_rolls_nothing() {
    let (v, children) = built("tls");
    let tls = v.controllers.tls.as_ref().expect("validated TLS");
    assert_eq!(tls.secret_name, "events-controller-tls");
    let data = data(&children);
    assert_eq!(
        data["FLOE_CONTROLLER_TLS_CA"],
        "/etc/floe/controller-tls/ca.crt"
    );
    assert_eq!(
        data["FLOE_CONTROLLER_TLS_CERT"],
        "/etc/floe/controller-tls/tls.crt"
    );
    assert_eq!(
        data["FLOE_CONTROLLER_TLS_KEY"],
        "/etc/floe/controller-tls/tls.key"
    );
    let sets =
        std::iter::once(&children.controller_statefulset).chain(&children.broker_statefulsets);
    for sts in sets {
        let name = sts.metadata.name.clone().unwrap();
        let spec = sts.spec.template.spec.as_ref().unwrap();
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "controller-tls")
            .unwrap_or_else(|| panic!("{name}: no TLS volume"));
        let secret = volume.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("events-controller-tls"));
        assert_eq!(
            secret.default_mode,
            Some(0o440),
            "{name}: the key is group-readable only"
        );
        let mount = spec.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "controller-tls")
            .unwrap_or_else(|| panic!("{name}: no TLS mount"));
        assert_eq!(mount.mount_path, "/etc/floe/controller-tls");
        assert_eq!(mount.read_only, Some(true));
        // The whole volume, not single files: kubelet updates it in place
        // when the Secret is renewed (a `subPath` mount never changes).
        assert_eq!(mount.sub_path, None, "{name}: subPath mount");
    }

    // A renewed certificate (same Secret, new contents) leaves the pods'
    // template alone: the processes read the renewed files themselves, so
    // a renewal rolls nothing.
    let (cluster, mut referenced) = load("tls");
    let secret = referenced.tls_secret.as_mut().unwrap();
    secret.string_data.as_mut().unwrap().insert(
        "tls.crt".into(),
        "-----BEGIN CERTIFICATE-----\nbmV3\n-----END CERTIFICATE-----\n".into(),
    );
    let renewed = build(&validate(&cluster, &referenced).unwrap());
    assert_ne!(
        v.controllers.tls,
        validate(&cluster, &referenced).unwrap().controllers.tls,
        "the operator's own client sees the renewal"
    );
    assert_eq!(
        config_hash(&children.config_map),
        config_hash(&renewed.config_map)
    );
    assert_eq!(
        children.controller_statefulset.spec.template,
        renewed.controller_statefulset.spec.template
    );
    assert_eq!(
        children.broker_statefulsets[0].spec.template,
        renewed.broker_statefulsets[0].spec.template
    );

    // Without TLS, nothing of it.
    let (_, plain) = built("minimal");
    assert!(!data_has_tls(&plain));
    let spec = &plain.controller_statefulset.spec;
    assert!(spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .all(|v| v.name != "controller-tls"));
}

#[test]
fn brokers_with_their_own_tls_secret_mount_it_and_only_controllers_speak_raft() {
    let (v, children) = built("tls-brokers");
    let tls = v.controllers.tls.as_ref().expect("validated TLS");
    assert_eq!(tls.broker_secret_name.as_deref(), Some("events-broker-tls"));
    let secret_of = |sts: &StatefulSet| {
        let spec = sts.spec.template.spec.as_ref().unwrap();
        spec.volumes
            .iter()
            .flatten()
            .find(|v| v.name == "controller-tls")
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone())
            .expect("a TLS volume")
    };
    assert_eq!(
        secret_of(&children.controller_statefulset),
        "events-controller-tls"
    );
    for sts in &children.broker_statefulsets {
        assert_eq!(secret_of(sts), "events-broker-tls");
    }
    let peers = data(&children)["FLOE_CONTROLLER_TLS_PEER_NAMES"].clone();
    assert_eq!(
        peers,
        "*.events-controller-headless.streaming.svc,\
         *.events-controller-headless.streaming.svc.cluster.local"
    );
    // Patterns `floe controller` accepts, matching every controller pod's
    // name (which its certificate must hold) and no broker's.
    let patterns: Vec<floe_controller::grpc::access::NamePattern> =
        peers.split(',').map(|p| p.parse().unwrap()).collect();
    for i in 0..v.controllers.replicas {
        let host = floe_operator::names::controller_host("events", "streaming", i);
        assert!(patterns.iter().any(|p| p.matches(&host)), "{host}");
    }
    assert!(!patterns
        .iter()
        .any(|p| p.matches("events-broker-0.events-broker-headless.streaming.svc")));
    // One Secret for all: no limit (the brokers hold the controllers' names).
    let (_, shared) = built("tls");
    assert!(!data(&shared).contains_key("FLOE_CONTROLLER_TLS_PEER_NAMES"));
}

fn data_has_tls(children: &Children) -> bool {
    data(children)
        .keys()
        .any(|k| k.starts_with("FLOE_CONTROLLER_TLS"))
}
