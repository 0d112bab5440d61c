//! A fresh bucket on the local S3 endpoint per test, emptied and removed afterwards.

use tidemark::storage::{self, Bucket};

/// A uniquely named bucket.
pub struct TestBucket {
    client: aws_sdk_s3::Client,
    bucket: Bucket,
}

impl TestBucket {
    /// Creates `tidemark-test-<uuid>` on the endpoint of `AWS_ENDPOINT_URL` (the local stack).
    pub async fn fresh() -> anyhow::Result<Self> {
        let client = storage::client_from_env().await;
        let name = format!("tidemark-test-{}", uuid::Uuid::new_v4().simple());
        client.create_bucket().bucket(&name).send().await.map_err(|err| {
            anyhow::anyhow!(
                "cannot create bucket `{name}` ({}); is the local stack up? run `scripts/stack up` and `eval \"$(scripts/stack env)\"`",
                aws_sdk_s3::error::DisplayErrorContext(&err)
            )
        })?;
        Ok(TestBucket {
            bucket: Bucket::new(client.clone(), &name),
            client,
        })
    }

    /// The bucket, for the code under test.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The raw client, for tests that act behind tidemark's back.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Deletes every object and the bucket.
    pub async fn remove(self) -> anyhow::Result<()> {
        let keys: Vec<String> = self
            .bucket
            .list("")
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        self.bucket.delete_many(&keys).await?;
        self.client
            .delete_bucket()
            .bucket(self.bucket.name())
            .send()
            .await?;
        Ok(())
    }
}
