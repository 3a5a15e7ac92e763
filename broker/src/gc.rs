//! Object garbage collection. An object is deleted only after the controller
//! no longer names it (unlink first) and a grace period has passed, so a
//! reader that looked it up just before can still finish. Objects that no
//! index names and that are older than the grace period (left by a crash
//! between PUT and commit) are swept on start and periodically.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::storage::objects::Objects;

pub struct Gc {
    objects: Objects,
    grace: Duration,
}

impl Gc {
    pub fn new(objects: Objects, grace: Duration) -> Gc {
        Gc { objects, grace }
    }

    /// Delete objects the controller has released, after the grace period.
    pub fn release(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let objects = self.objects.clone();
        let grace = self.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for key in keys {
                if let Err(e) = objects.delete(&key).await {
                    // The periodic sweep retries: the object is no longer in the index.
                    tracing::warn!(key, error = %e, "cannot delete released object");
                }
            }
        });
    }

    /// Delete data objects that no index entry names and that are older than
    /// the grace period. Returns how many were deleted.
    pub async fn sweep(&self, cluster: &Arc<Cluster>) -> Result<usize, String> {
        let listed = self
            .objects
            .list("data/")
            .await
            .map_err(|e| e.to_string())?;
        let live: HashSet<String> = cluster.read(|s| s.objects.keys().cloned().collect());
        let cutoff = chrono_now_ms() - self.grace.as_millis() as i64;
        let mut deleted = 0;
        for (key, modified_ms) in listed {
            if modified_ms < cutoff && !live.contains(&key) {
                self.objects.delete(&key).await.map_err(|e| e.to_string())?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "swept orphaned objects");
        }
        Ok(deleted)
    }
}

fn chrono_now_ms() -> i64 {
    crate::storage::uploader::now_ms()
}
