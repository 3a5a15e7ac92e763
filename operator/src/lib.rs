//! The Floe operator: turns a `KafkaCluster` (crate `floe-crds`) into running
//! controllers and brokers, as a pipeline whose decisions are pure.
//!
//! # The reconcile pipeline
//!
//! Following the Stackable operators (see `CONVENTIONS.md`), one reconcile is:
//!
//! 1. **dereference** (I/O only): read the objects the spec points at — the
//!    credentials Secret — into [`reconcile::dereference::Referenced`].
//! 2. **validate** (pure, [`reconcile::validate`]): spec + referenced objects →
//!    a [`reconcile::validate::ValidatedCluster`] with every default resolved,
//!    or [`reconcile::validate::InvalidSpec`] listing every problem with its
//!    field path and what to change. An invalid spec is *not* retried: the
//!    reconciler writes `Degraded=True, reason InvalidSpec` and waits for the
//!    next change of the KafkaCluster or of a referenced Secret.
//! 3. **build** (pure, [`reconcile::build`]): validated cluster → every child
//!    object as k8s-openapi types, owned by the KafkaCluster, with names from
//!    [`names`] and labels from [`labels`].
//! 4. **apply** ([`reconcile::apply`]): server-side apply of [`reconcile::build::Children::in_apply_order`]
//!    under one field manager (`floe-operator`), in that fixed order.
//! 5. **orphans**: delete children carrying [`labels::cluster_selector`] and
//!    owned by the cluster that the build no longer produces (e.g. the spot
//!    StatefulSet once spot is turned off and its brokers have moved).
//! 6. **status** (pure, [`reconcile::status`]): observed StatefulSets and pods
//!    → `.status` with `Ready`/`Progressing`/`Degraded`, written through
//!    `/status` only.
//!
//! The loop around the pipeline is [`controller`]: a
//! `kube::runtime::Controller` over `KafkaCluster`, owning its children and
//! watching referenced Secrets, with a finalizer that honours
//! `reclaimPolicy` on deletion ([`reclaim`]), Events for what a user must act
//! on, and a requeue delay chosen per error. Between build and apply, the
//! pure [`reconcile::placement`] step (with [`reconcile::scaling`]) decides
//! the broker layout to apply and what to ask the metadata controllers
//! ([`admin::ClusterAdmin`]): scale-in drains the highest ordinals and lowers
//! the StatefulSets only once they are drained; scale-out asks for a
//! rebalance once the new brokers registered; a change of spot placement
//! moves brokers between the StatefulSets one at a time, each drained first.
//!
//! # Tests
//!
//! The pure stages are tested from YAML fixtures in `operator/tests/fixtures/`
//! (`pipeline.rs`, `validation.rs`, `status.rs`); `reconcile.rs` runs the
//! real [`controller::reconcile`] through a `kube::Client` over kube's
//! `tower-test` mock service, answered by an in-memory fake API server
//! (`tests/support/fake_api.rs`, which says what it does not model), with an
//! in-memory [`admin::ClusterAdmin`] and a recording [`reclaim::DataReclaimer`];
//! `controller_run.rs` runs the [`controller::run`] wiring itself against the
//! fake's watches (cluster, Secret and deletion triggers); `placement.rs`
//! moves brokers between the on-demand and spot StatefulSets against it,
//! with stand-ins for the StatefulSet and metadata controllers; `lease.rs`
//! runs leader election against it.
//!
//! # The binary
//!
//! `floe-operator` (`src/main.rs`): replicas elect a leader with a
//! `coordination.k8s.io/v1` Lease ([`lease`]) and only the leader runs the
//! controller; every replica serves `/metrics`, `/healthz` and `/readyz`
//! ([`endpoints`]); `reclaimPolicy: Delete` deletes through S3
//! ([`reclaim::S3Reclaimer`]). TLS is rustls on ring (no aws-lc-sys).
//!
//! # Spot interruptions
//!
//! [`spot`] runs `floe-spot`'s node watcher for every KafkaCluster: Nodes,
//! broker Pods and broker PodDisruptionBudgets are watched (one set of
//! reflectors per process) into one `floe_spot::ClusterView` per cluster,
//! and the brokers on a node that is going (Node Termination Handler or
//! Karpenter taint, cordon, deletion) are drained through
//! [`admin::ClusterAdmin::drain`] within the budget, with an Event and
//! `floe_operator_spot_drains_total{reason}`. Only the leader runs it
//! (`--spot-watch`, default on); `tests/spot_drain.rs` runs it against the
//! fake API server. See docs/spot.md.
//!
//! # What comes next
//!
//! - Rolling changes one broker at a time, each drained first (moving
//!   brokers between the on-demand and spot StatefulSets already is, see
//!   [`reconcile::placement`]).
//!
//! The Helm chart that installs the operator (CRD, Deployment, least-privilege
//! RBAC) is `charts/floe-operator/`; `tests/chart.rs` keeps its CRD copy
//! current and validates the example clusters in `charts/examples/`.

pub mod admin;
pub mod admin_grpc;
pub mod controller;
pub mod endpoints;
pub mod labels;
pub mod lease;
pub mod metrics;
pub mod names;
pub mod quantity;
pub mod reclaim;
pub mod reconcile;
pub mod spot;
