//! Deleting a cluster's object-store data when the KafkaCluster is deleted
//! with `reclaimPolicy: Delete` ([`DataReclaimer`]). The reconciler's
//! finalizer calls it once per deletion attempt and removes the finalizer
//! only after it succeeded, so a failure (wrong credentials, an unreachable
//! endpoint) keeps the KafkaCluster, with an Event saying why, until it works
//! or the policy is changed to `Retain`.

use futures::future::BoxFuture;

use crate::reconcile::validate::ObjectStore;

mod s3;

pub use s3::{delete_under, S3Reclaimer};

/// Static credentials read from the cluster's credentials Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A failed deletion of object-store data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("deleting the objects under {url} failed: {message}; fix access to the bucket or set reclaimPolicy: Retain to keep the data")]
pub struct ReclaimError {
    /// The `s3://bucket/prefix` URL.
    pub url: String,
    /// What went wrong.
    pub message: String,
}

/// Deletes every object under a cluster's prefix.
pub trait DataReclaimer: Send + Sync {
    /// Delete every object under `store`'s prefix (the whole bucket when the
    /// prefix is empty); returns how many objects were deleted.
    fn delete_all<'a>(
        &'a self,
        store: &'a ObjectStore,
        credentials: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<u64, ReclaimError>>;
}
