//! The S3 [`DataReclaimer`]: lists every object under the prefix and deletes
//! them in batches (`DeleteObjects`), with the cluster's static credentials
//! or the operator's ambient ones (IRSA, Pod Identity, instance profile).

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::ObjectStore as Store;

use super::{Credentials, DataReclaimer, ReclaimError};
use crate::reconcile::validate::ObjectStore;

/// Deletes through the S3 API.
#[derive(Clone, Copy, Debug, Default)]
pub struct S3Reclaimer;

impl DataReclaimer for S3Reclaimer {
    fn delete_all<'a>(
        &'a self,
        store: &'a ObjectStore,
        credentials: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<u64, ReclaimError>> {
        Box::pin(async move {
            let failed = |message: String| ReclaimError {
                url: store.url(),
                message,
            };
            let mut b = AmazonS3Builder::from_env().with_bucket_name(&store.bucket);
            if let Some(endpoint) = &store.endpoint {
                b = b
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            if let Some(c) = credentials {
                b = b
                    .with_access_key_id(&c.access_key_id)
                    .with_secret_access_key(&c.secret_access_key);
            }
            match &store.region {
                Some(region) => b = b.with_region(region),
                None if std::env::var("AWS_REGION").is_err() => b = b.with_region("us-east-1"),
                None => {}
            }
            let s3 = b.build().map_err(|e| failed(e.to_string()))?;
            delete_under(&s3, &store.prefix)
                .await
                .map_err(|e| failed(e.to_string()))
        })
    }
}

/// Delete every object of `store` under `prefix` (path segments: `a/b` is a
/// prefix of `a/b/c`, not of `a/bc`); `""` is the whole store. Returns the
/// number deleted.
pub async fn delete_under(store: &dyn Store, prefix: &str) -> object_store::Result<u64> {
    let prefix = (!prefix.is_empty()).then(|| Path::from(prefix));
    let locations = store
        .list(prefix.as_ref())
        .map_ok(|meta| meta.location)
        .boxed();
    store
        .delete_stream(locations)
        .try_fold(0u64, |n, _| async move { Ok(n + 1) })
        .await
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    #[tokio::test]
    async fn deletes_exactly_the_objects_under_the_prefix() {
        let store = InMemory::new();
        for key in [
            "prod/payments/a",
            "prod/payments/wal/b",
            "prod/paymentsx/c",
            "other/d",
        ] {
            store
                .put(&Path::from(key), PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        assert_eq!(delete_under(&store, "prod/payments").await.unwrap(), 2);
        let left: Vec<String> = store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        let mut left = left;
        left.sort();
        assert_eq!(left, vec!["other/d", "prod/paymentsx/c"]);
        assert_eq!(delete_under(&store, "").await.unwrap(), 2);
    }
}
