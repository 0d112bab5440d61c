//! `unique` across a whole run: each extraction invocation keeps a 64-bit digest of every row's
//! checked values with the row's key, sorts them and writes them to S3 beside its files; the
//! commit merges every invocation's sorted digests in one streaming pass (a bounded window of
//! each object), so that two rows in different chunks sharing a value are found with memory
//! bounded by the number of invocations, not the run's rows.
//!
//! A digest is 64-bit FNV-1a, stable across platforms and releases. Two different values share
//! a digest with a probability of about n²/2⁶⁵ (1 in 10 million for 2 million rows): such a
//! collision would report a duplicate that is not one, never hide one.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::storage::Bucket;

/// Incremental 64-bit FNV-1a.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Fnv64 {
    /// The empty hash.
    pub fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    /// Feeds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64::new()
    }
}

/// The digests of one invocation's rows: `(digest, key)` pairs, keys in one arena.
#[derive(Debug, Default)]
pub struct UniqueDigest {
    entries: Vec<(u64, u32, u32)>,
    keys: String,
}

impl UniqueDigest {
    /// Adds a row.
    pub fn push(&mut self, digest: u64, key: &str) {
        let start = self.keys.len() as u32;
        self.keys.push_str(key);
        self.entries.push((digest, start, key.len() as u32));
    }

    /// Rows added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no row was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The object: entries sorted by digest then key, each `digest (u64 LE) | key length (u16
    /// LE) | key bytes`; a row read twice (same digest, same key) is kept once.
    pub fn encode(mut self) -> Bytes {
        let keys = std::mem::take(&mut self.keys);
        let key =
            |&(_, start, len): &(u64, u32, u32)| &keys[start as usize..(start + len) as usize];
        self.entries
            .sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key(a).cmp(key(b))));
        self.entries.dedup_by(|a, b| a.0 == b.0 && key(a) == key(b));
        let mut out = BytesMut::with_capacity(self.entries.len() * 12 + keys.len());
        for entry in &self.entries {
            let text = key(entry).as_bytes();
            let text = &text[..text.len().min(usize::from(u16::MAX))];
            out.put_u64_le(entry.0);
            out.put_u16_le(text.len() as u16);
            out.put_slice(text);
        }
        out.freeze()
    }
}

/// Rows of one check's digest an invocation holds before it writes them out as an object of
/// their own (about 12 MiB with short keys): memory stays bounded however many rows one
/// invocation reads (`full_sync` reads a table in one).
pub const SPILL_ROWS: usize = 500_000;

/// Writes one extraction invocation's digests, numbered in write order, so that a retried
/// invocation (which reads the same rows) rewrites the same objects.
pub struct DigestWriter<'a> {
    bucket: &'a Bucket,
    key: Box<dyn Fn(u32, usize) -> String + Send + Sync + 'a>,
    part: u32,
    /// Every object written, in order.
    pub written: Vec<super::DigestObject>,
}

impl<'a> DigestWriter<'a> {
    /// A writer to `bucket`, naming part `p` of check `c` `key(p, c)`.
    pub fn new(bucket: &'a Bucket, key: impl Fn(u32, usize) -> String + Send + Sync + 'a) -> Self {
        DigestWriter {
            bucket,
            key: Box::new(key),
            part: 0,
            written: Vec::new(),
        }
    }

    /// Writes each non-empty digest as the next part.
    pub async fn write(&mut self, digests: Vec<(usize, UniqueDigest)>) -> Result<()> {
        for (check, digest) in digests {
            if digest.is_empty() {
                continue;
            }
            let key = (self.key)(self.part, check);
            self.bucket.put(&key, digest.encode()).await?;
            self.written.push(super::DigestObject { check, key });
        }
        self.part += 1;
        Ok(())
    }
}

/// How much of each digest object the merge holds at once.
const WINDOW_BYTES: u64 = 256 * 1024;

/// One digest object read in windows.
struct Stream<'a> {
    bucket: &'a Bucket,
    key: &'a str,
    size: u64,
    offset: u64,
    buffer: Vec<u8>,
    at: usize,
}

impl Stream<'_> {
    /// The next entry, reading the next window when the buffer holds no whole entry.
    async fn next(&mut self) -> Result<Option<(u64, String)>> {
        loop {
            if let Some((entry, used)) = parse_entry(&self.buffer[self.at..]) {
                self.at += used;
                return Ok(Some(entry));
            }
            if self.offset >= self.size {
                return match self.at == self.buffer.len() {
                    true => Ok(None),
                    false => Err(Error::Corrupt {
                        uri: self.bucket.uri(self.key),
                        reason: "a unique-check digest ends inside an entry".to_owned(),
                        fix: "re-run the sync: the digest is rewritten with the chunk".to_owned(),
                    }),
                };
            }
            let end = (self.offset + WINDOW_BYTES).min(self.size);
            let more = self.bucket.get_range(self.key, self.offset..end).await?;
            self.offset = end;
            self.buffer.drain(..self.at);
            self.at = 0;
            self.buffer.extend_from_slice(&more);
        }
    }
}

fn parse_entry(bytes: &[u8]) -> Option<((u64, String), usize)> {
    let digest = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let len = usize::from(u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?));
    let key = bytes.get(10..10 + len)?;
    Some((
        (digest, String::from_utf8_lossy(key).into_owned()),
        10 + len,
    ))
}

/// Rows sharing a value with a row of another key, over every digest object of a run, and the
/// keys of the first `examples` of them.
pub async fn duplicates(
    bucket: &Bucket,
    objects: &[String],
    examples: usize,
) -> Result<(u64, Vec<String>)> {
    let mut streams = Vec::with_capacity(objects.len());
    for key in objects {
        let size = bucket.size(key).await?.ok_or_else(|| Error::Corrupt {
            uri: bucket.uri(key),
            reason: "the unique-check digest a chunk manifest names is missing".to_owned(),
            fix: "re-run the sync: a new run writes its digests again".to_owned(),
        })?;
        streams.push(Stream {
            bucket,
            key,
            size,
            offset: 0,
            buffer: Vec::new(),
            at: 0,
        });
    }
    let mut heads = Vec::with_capacity(streams.len());
    for stream in &mut streams {
        heads.push(stream.next().await?);
    }
    // Entries arrive sorted by digest then key: a group is one digest, its distinct keys are
    // counted against the last one seen, and only the examples are kept.
    let (mut failures, mut found) = (0u64, Vec::new());
    let mut group: Option<Group> = None;
    loop {
        let smallest = heads
            .iter()
            .enumerate()
            .filter_map(|(i, head)| head.as_ref().map(|entry| (i, entry)))
            .min_by(|(_, a), (_, b)| a.cmp(b))
            .map(|(i, _)| i);
        let Some((digest, key)) = smallest.and_then(|i| heads[i].take()) else {
            break;
        };
        let i = smallest.unwrap_or_default();
        heads[i] = streams[i].next().await?;
        match &mut group {
            Some(current) if current.digest == digest => {
                if current.last_key != key {
                    current.distinct += 1;
                    if current.keys.len() <= examples {
                        current.keys.push(key.clone());
                    }
                    current.last_key = key;
                }
            }
            _ => {
                if let Some(done) = group.take() {
                    done.close(&mut failures, &mut found, examples);
                }
                group = Some(Group {
                    digest,
                    last_key: key.clone(),
                    distinct: 1,
                    keys: vec![key],
                });
            }
        }
    }
    if let Some(done) = group {
        done.close(&mut failures, &mut found, examples);
    }
    Ok((failures, found))
}

/// The rows of one digest in the merge.
struct Group {
    digest: u64,
    last_key: String,
    distinct: u64,
    keys: Vec<String>,
}

impl Group {
    /// Counts the group's duplicates and keeps its keys as examples while there is room.
    fn close(self, failures: &mut u64, found: &mut Vec<String>, examples: usize) {
        if self.distinct > 1 {
            *failures += self.distinct - 1;
            let room = examples.saturating_sub(found.len());
            found.extend(self.keys.into_iter().take(room));
        }
    }
}
