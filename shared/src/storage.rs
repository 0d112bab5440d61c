//! S3 access for everything tidemark keeps: conditional writes, full listings, batched deletes and
//! streaming multipart uploads.
//!
//! This module knows buckets and keys, never what they mean (the naming module builds the keys).
//! Every listing is fully paginated; every conditional write reports a lost race as
//! [`PutOutcome::PreconditionFailed`] instead of overwriting.

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::Bytes;

use crate::config::AwsSettings;
use crate::error::{Error, Result};

/// Largest number of keys one DeleteObjects call takes.
const DELETE_BATCH: usize = 1000;

/// Builds an S3 client from the standard AWS environment, with the default [`AwsSettings`].
/// With an endpoint override (`AWS_ENDPOINT_URL`, e.g. the local S3 endpoint) it uses
/// path-style addressing.
pub async fn client_from_env() -> aws_sdk_s3::Client {
    client_from_config(&sdk_config(&AwsSettings::default()).await)
}

/// The AWS configuration every client of the process shares: the standard environment
/// (`AWS_ENDPOINT_URL` included) with `settings`' bounds. A connection that opens slower than
/// `connect_timeout`, a response that does not begin within `read_timeout`, or an upload or
/// download that moves nothing for `read_timeout` (the SDK's stalled-stream protection) fails
/// its attempt; the SDK retries up to `max_attempts`, then the step fails as `Retryable`.
pub async fn sdk_config(settings: &AwsSettings) -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(settings.connect_timeout.0)
        .read_timeout(settings.read_timeout.0)
        .build();
    let stalled_streams = StalledStreamProtectionConfig::enabled()
        .grace_period(settings.read_timeout.0)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        .stalled_stream_protection(stalled_streams)
        .load()
        .await
}

/// Builds an S3 client from an already loaded AWS configuration.
pub fn client_from_config(shared: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(shared)
        .force_path_style(shared.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// An object's content and its ETag.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The object's bytes.
    pub body: Bytes,
    /// The ETag, for a following `If-Match` write.
    pub etag: String,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, seconds since the Unix epoch.
    pub last_modified_epoch_seconds: i64,
}

/// The result of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written; the new ETag.
    Written(String),
    /// The condition did not hold: someone else wrote first. Nothing was changed.
    PreconditionFailed,
}

/// A key that DeleteObjects could not delete, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    /// The key.
    pub key: String,
    /// S3's error code and message.
    pub reason: String,
}

/// One bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    client: aws_sdk_s3::Client,
    name: String,
    /// The account that must own the bucket (`ExpectedBucketOwner` on every call), if known.
    expected_owner: Option<String>,
}

impl Bucket {
    /// The bucket `name`, reached through `client`.
    pub fn new(client: aws_sdk_s3::Client, name: impl Into<String>) -> Self {
        Bucket {
            client,
            name: name.into(),
            expected_owner: None,
        }
    }

    /// This bucket, with every call refused by S3 unless `owner` (a 12-digit account id) owns
    /// it: a mistyped or reclaimed bucket name of another account is never read or written.
    pub fn with_expected_owner(mut self, owner: Option<String>) -> Self {
        self.expected_owner = owner;
        self
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `s3://bucket/key`.
    pub fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.name)
    }

    /// Reads an object, or `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<StoredObject>> {
        let response = self
            .client
            .get_object()
            .bucket(&self.name)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .key(key)
            .send()
            .await;
        let output = match response {
            Ok(output) => output,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|service| service.is_no_such_key()) =>
            {
                return Ok(None)
            }
            Err(err) => return Err(s3_error(format!("reading {}", self.uri(key)), err)),
        };
        let etag = output.e_tag().unwrap_or_default().to_owned();
        let body = collect(output.body, || format!("reading {}", self.uri(key))).await?;
        Ok(Some(StoredObject { body, etag }))
    }

    /// An object's size, or `None` when it does not exist (`HeadObject`).
    pub async fn size(&self, key: &str) -> Result<Option<u64>> {
        let response = self
            .client
            .head_object()
            .bucket(&self.name)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .key(key)
            .send()
            .await;
        match response {
            Ok(output) => Ok(Some(
                output
                    .content_length()
                    .and_then(|length| u64::try_from(length).ok())
                    .unwrap_or(0),
            )),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|service| service.is_not_found()) =>
            {
                Ok(None)
            }
            Err(err) => Err(s3_error(format!("sizing {}", self.uri(key)), err)),
        }
    }

    /// Bytes `range` of an object (a ranged `GetObject`): what a reader of one part of a large
    /// file holds, instead of the whole file.
    pub async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let context = || format!("reading bytes {range:?} of {}", self.uri(key));
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let output = self
            .client
            .get_object()
            .bucket(&self.name)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|err| s3_error(context(), err))?;
        collect(output.body, context).await
    }

    /// Writes an object unconditionally (for content-addressed keys written once, like data parts).
    pub async fn put(&self, key: &str, body: Bytes) -> Result<String> {
        let output = self
            .client
            .put_object()
            .bucket(&self.name)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|err| s3_error(format!("writing {}", self.uri(key)), err))?;
        Ok(output.e_tag().unwrap_or_default().to_owned())
    }

    /// Creates an object only if no object has the key (`If-None-Match: *`).
    pub async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<PutOutcome> {
        let response = self
            .client
            .put_object()
            .bucket(&self.name)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        conditional_outcome(response.map(|o| o.e_tag), || {
            format!("creating {}", self.uri(key))
        })
    }

    /// Replaces an object only if its ETag is still `etag` (`If-Match`).
    pub async fn put_if_match(&self, key: &str, body: Bytes, etag: &str) -> Result<PutOutcome> {
        let response = self
            .client
            .put_object()
            .bucket(&self.name)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .key(key)
            .if_match(etag)
            .body(ByteStream::from(body))
            .send()
            .await;
        conditional_outcome(response.map(|o| o.e_tag), || {
            format!("replacing {}", self.uri(key))
        })
    }

    /// Every object under `prefix`, in key order, across all pages.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut objects = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|err| s3_error(format!("listing {}", self.uri(prefix)), err))?;
            for object in page.contents() {
                objects.push(ObjectInfo {
                    key: object.key().unwrap_or_default().to_owned(),
                    size: object.size().unwrap_or_default().max(0) as u64,
                    last_modified_epoch_seconds: object
                        .last_modified()
                        .map(|t| t.secs())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(objects)
    }

    /// Deletes `keys` in batches of 1000; returns the keys S3 refused, with its reasons.
    pub async fn delete_many(&self, keys: &[String]) -> Result<Vec<DeleteFailure>> {
        let mut failures = Vec::new();
        for batch in keys.chunks(DELETE_BATCH) {
            let identifiers = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|err| Error::S3 {
                    context: "building a delete request".to_owned(),
                    message: err.to_string(),
                    retryable: false,
                    source: Some(Box::new(err)),
                })?;
            let delete = Delete::builder()
                .set_objects(Some(identifiers))
                .quiet(true)
                .build()
                .map_err(|err| Error::S3 {
                    context: "building a delete request".to_owned(),
                    message: err.to_string(),
                    retryable: false,
                    source: Some(Box::new(err)),
                })?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.name)
                .set_expected_bucket_owner(self.expected_owner.clone())
                .delete(delete)
                .send()
                .await
                .map_err(|err| s3_error(format!("deleting from s3://{}", self.name), err))?;
            failures.extend(output.errors().iter().map(|error| DeleteFailure {
                key: error.key().unwrap_or_default().to_owned(),
                reason: format!(
                    "{}: {}",
                    error.code().unwrap_or("unknown"),
                    error.message().unwrap_or("")
                ),
            }));
        }
        Ok(failures)
    }

    /// Starts a multipart upload to `key`.
    pub async fn start_upload(&self, key: &str) -> Result<MultipartUpload> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.name)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .key(key)
            .send()
            .await
            .map_err(|err| s3_error(format!("starting upload to {}", self.uri(key)), err))?;
        let upload_id = output.upload_id().ok_or_else(|| Error::S3 {
            context: format!("starting upload to {}", self.uri(key)),
            message: "S3 returned no upload id".to_owned(),
            retryable: true,
            source: None,
        })?;
        Ok(MultipartUpload {
            bucket: self.clone(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            parts: Vec::new(),
        })
    }
}

/// A multipart upload in progress. Parts other than the last must be at least 5 MiB.
/// Either [`MultipartUpload::complete`] or [`MultipartUpload::abort`] it: an upload that is
/// neither leaves invisible, billed parts behind.
#[derive(Debug)]
pub struct MultipartUpload {
    bucket: Bucket,
    key: String,
    upload_id: String,
    parts: Vec<CompletedPart>,
}

impl MultipartUpload {
    /// The key being written.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Uploads the next part.
    pub async fn upload_part(&mut self, body: Bytes) -> Result<()> {
        let part_number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        let output = self
            .bucket
            .client
            .upload_part()
            .bucket(&self.bucket.name)
            .set_expected_bucket_owner(self.bucket.expected_owner.clone())
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(part_number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|err| {
                s3_error(
                    format!(
                        "uploading part {part_number} of {}",
                        self.bucket.uri(&self.key)
                    ),
                    err,
                )
            })?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(output.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    /// Completes the upload; the object becomes visible.
    pub async fn complete(self) -> Result<()> {
        self.bucket
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket.name)
            .set_expected_bucket_owner(self.bucket.expected_owner.clone())
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(self.parts.clone()))
                    .build(),
            )
            .send()
            .await
            .map_err(|err| s3_error(format!("completing {}", self.bucket.uri(&self.key)), err))?;
        Ok(())
    }

    /// Abandons the upload; no object appears and the parts are freed.
    pub async fn abort(self) -> Result<()> {
        self.bucket
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket.name)
            .set_expected_bucket_owner(self.bucket.expected_owner.clone())
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
            .map_err(|err| {
                s3_error(
                    format!("aborting upload to {}", self.bucket.uri(&self.key)),
                    err,
                )
            })?;
        Ok(())
    }
}

fn conditional_outcome<E, R>(
    response: std::result::Result<Option<String>, SdkError<E, R>>,
    context: impl FnOnce() -> String,
) -> Result<PutOutcome>
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus + Send + Sync + 'static,
{
    match response {
        Ok(etag) => Ok(PutOutcome::Written(etag.unwrap_or_default())),
        Err(err) if err.raw_response().map(HttpStatus::status_code) == Some(412) => {
            Ok(PutOutcome::PreconditionFailed)
        }
        // S3 answers 409 ConditionalRequestConflict when two conditional writes race.
        Err(err) if err.raw_response().map(HttpStatus::status_code) == Some(409) => {
            Ok(PutOutcome::PreconditionFailed)
        }
        Err(err) => Err(s3_error(context(), err)),
    }
}

/// The HTTP status of a raw response.
pub trait HttpStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// An S3 failure as one readable line: the service's code and message (with the fix for the
/// common ones) rather than the SDK's debug dump of the whole response; transport failures keep
/// their cause chain.
/// The whole of a response body. A broken stream is retryable, and its error is kept whole: the
/// stream's own message ("streaming error") hides why, a stall or a reset.
async fn collect(body: ByteStream, context: impl FnOnce() -> String) -> Result<Bytes> {
    match body.collect().await {
        Ok(data) => Ok(data.into_bytes()),
        Err(err) => Err(Error::S3 {
            context: context(),
            message: DisplayErrorContext(&err).to_string(),
            retryable: true,
            source: Some(Box::new(err)),
        }),
    }
}

fn s3_error<E, R>(context: String, err: SdkError<E, R>) -> Error
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus + Send + Sync + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status_code();
            status >= 500 || status == 429
        }
        _ => false,
    };
    let message = match (&err, err.code()) {
        (SdkError::ServiceError(service), Some(code)) => {
            let hint = match code {
                "NoSuchBucket" => "; create the bucket, or correct the pipeline's `s3.bucket`",
                "AccessDenied" => "; the credentials may not use this bucket or key: check the role's S3 permissions",
                _ => "",
            };
            format!(
                "{code}: {} (HTTP {}){hint}",
                err.message().unwrap_or("no message"),
                service.raw().status_code()
            )
        }
        _ => DisplayErrorContext(&err).to_string(),
    };
    Error::S3 {
        context,
        message,
        retryable,
        source: Some(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The head of the first request a bucket sends to a local listener (answered 404).
    async fn first_request(bucket: impl FnOnce(aws_sdk_s3::Client) -> Bucket) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::for_tests())
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .build();
        let bucket = bucket(aws_sdk_s3::Client::from_conf(config));
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap() == 1 {
                head.push(byte[0]);
            }
            socket
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&head).to_ascii_lowercase()
        });
        let _ = bucket.get("k").await;
        server.await.unwrap()
    }

    /// S3 refuses (403) a call whose `x-amz-expected-bucket-owner` is not the bucket's owner
    /// ("Verifying bucket ownership with bucket owner condition",
    /// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html); the
    /// local S3 stand-in (moto) does not check it, so the header itself is what is tested.
    #[tokio::test]
    async fn the_expected_owner_goes_with_every_call() {
        let head = first_request(|client| {
            Bucket::new(client, "b").with_expected_owner(Some("123456789012".into()))
        })
        .await;
        assert!(
            head.contains("x-amz-expected-bucket-owner: 123456789012"),
            "{head}"
        );
        let head = first_request(|client| Bucket::new(client, "b")).await;
        assert!(!head.contains("x-amz-expected-bucket-owner"), "{head}");
    }
}
