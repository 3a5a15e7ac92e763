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
//! 4. **apply**: server-side apply of [`reconcile::build::Children::in_apply_order`]
//!    under one field manager (`floe-operator`), in that fixed order.
//! 5. **orphans**: delete children carrying [`labels::cluster_selector`] that
//!    the build no longer produces (e.g. the spot StatefulSet after spot is
//!    turned off).
//! 6. **status** (pure, [`reconcile::status`]): observed StatefulSets and pods
//!    → `.status` with `Ready`/`Progressing`/`Degraded`, written through
//!    `/status` only.
//!
//! # What this crate has today, and what comes next
//!
//! This slice holds the pure stages (2, 3, 6), tested from YAML fixtures in
//! `operator/tests/fixtures/` with no API server and no kube client. Next:
//!
//! - `controller.rs`: `kube::runtime::Controller` over `KafkaCluster`, owning
//!   the StatefulSets, Services, ConfigMaps and PDBs it builds and watching
//!   Secrets (mapped back to the clusters that reference them), with a
//!   finalizer that deletes object-store data under the prefix when
//!   `reclaimPolicy: Delete`; per-error requeue policy; Events for what a user
//!   should act on (invalid spec, missing Secret, a failed drain).
//! - `reconcile/dereference.rs` fetches, `reconcile/apply.rs` does SSA and the
//!   orphan sweep, both behind a small trait so tests run against a mock API
//!   server (kube's `tower-test` scenario pattern) and an in-process fake with
//!   list/watch, SSA, `/status` and finalizers: create, update, scale out,
//!   scale in (drain called before the StatefulSet shrinks), delete, and a
//!   re-run that patches nothing.
//! - `reconcile/scaling.rs`: scale-out asks the controller (through
//!   `metadata-api`) to rebalance once new brokers registered; scale-in drains
//!   the brokers with the highest ordinals, waits until drained, then lowers
//!   the StatefulSet; spot interruptions (node taints) drain the broker on that
//!   node. Its outcome feeds `status.lastReassignment`.
//! - The binary: leader election with a Lease, `/metrics`, `/healthz`,
//!   `/readyz`; the Helm chart with least-privilege RBAC lives in `charts/`.

pub mod labels;
pub mod names;
pub mod quantity;
pub mod reconcile;
