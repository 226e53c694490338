//! Reading a bundle as a stream: one record in memory at a time, each
//! checked against its id as it is read (chunks after bounded
//! decompression), the order and uniqueness rules enforced, and the end
//! record's count and digest checked before the reader reports the end.
//! What the records mean (signatures, references) is [`crate::verify`]'s job.

use std::collections::HashSet;
use std::io::{ErrorKind, Read};

use meshota_blobstore::SentChunk;
use meshota_manifest::Hash;

use crate::crypt::{DecryptionKey, RecordCipher, open_stanza, stanza_recipient};
use crate::error::{Error, Result};
use crate::format::{
    CHUNK_PREFIX_LEN, FIXED_HEADER_LEN, RECORD_HEAD_LEN, RecordKind, STANZA_LEN, TAG_LEN,
    parse_fixed_header,
};

/// What a bundle's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Whether the records are encrypted.
    pub encrypted: bool,
    /// The recipient ids (BLAKE3 of each recipient's encapsulation key).
    pub recipients: Vec<Hash>,
    /// Header length in bytes.
    pub len: u64,
}

/// A record's content, checked against its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A signed trust root, as its file holds it.
    TrustRoot(Vec<u8>),
    /// A signed release manifest.
    Manifest(Vec<u8>),
    /// An encoded chunk index.
    Index(Vec<u8>),
    /// A chunk's raw content (hashes to the record id).
    Chunk(Vec<u8>),
}

/// One record read from a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The id: the chunk hash for chunks, else BLAKE3 of the payload.
    pub id: Hash,
    /// Its record number, from 0.
    pub number: u64,
    /// Byte offset of the record in the file.
    pub offset: u64,
    /// Bytes the record takes in the file.
    pub size: u64,
    /// The content.
    pub item: Item,
}

impl Record {
    /// The record's kind.
    #[must_use]
    pub const fn kind(&self) -> RecordKind {
        match self.item {
            Item::TrustRoot(_) => RecordKind::TrustRoot,
            Item::Manifest(_) => RecordKind::Manifest,
            Item::Index(_) => RecordKind::ChunkIndex,
            Item::Chunk(_) => RecordKind::Chunk,
        }
    }
}

/// Reads a bundle's records in order; see the module doc for what each
/// call checks. After an error the reader must not be used again.
pub struct BundleReader<R> {
    r: R,
    header: Header,
    hasher: blake3::Hasher,
    offset: u64,
    count: u64,
    cipher: Option<RecordCipher>,
    last: RecordKind,
    seen: HashSet<(RecordKind, Hash)>,
    done: bool,
}

impl<R> core::fmt::Debug for BundleReader<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BundleReader")
            .field("header", &self.header)
            .field("offset", &self.offset)
            .field("records", &self.count)
            .finish_non_exhaustive()
    }
}

/// Reads exactly `buf.len()` bytes; an early end is [`Error::Truncated`].
fn fill<R: Read>(r: &mut R, buf: &mut [u8], offset: u64) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            Error::Truncated { offset }
        } else {
            Error::Io {
                path: "bundle".into(),
                source: e,
            }
        }
    })
}

/// Reads and parses a bundle header (no key needed).
///
/// # Errors
/// [`Error::NotABundle`], [`Error::Truncated`], I/O.
pub fn read_header<R: Read>(r: &mut R) -> Result<(Header, Vec<u8>)> {
    let mut fixed = [0u8; FIXED_HEADER_LEN];
    fill(r, &mut fixed, 0)?;
    let parsed = parse_fixed_header(&fixed).map_err(|reason| Error::NotABundle {
        what: "bundle",
        reason,
    })?;
    let mut raw = fixed.to_vec();
    let mut recipients = Vec::with_capacity(parsed.recipients);
    for _ in 0..parsed.recipients {
        let mut stanza = vec![0u8; STANZA_LEN];
        fill(r, &mut stanza, raw.len() as u64)?;
        recipients.extend(stanza_recipient(&stanza));
        raw.extend_from_slice(&stanza);
    }
    Ok((
        Header {
            encrypted: parsed.encrypted,
            recipients,
            len: raw.len() as u64,
        },
        raw,
    ))
}

impl<R: Read> BundleReader<R> {
    /// Opens a bundle; an encrypted one needs the private key of one of
    /// its recipients.
    ///
    /// # Errors
    /// [`Error::NotABundle`], [`Error::Truncated`], [`Error::NeedKey`],
    /// [`Error::NotARecipient`], [`Error::Decrypt`], I/O.
    pub fn open(mut r: R, key: Option<&DecryptionKey>) -> Result<Self> {
        let (header, raw) = read_header(&mut r)?;
        let mut cipher = None;
        if header.encrypted {
            let key = key.ok_or(Error::NeedKey {
                recipients: header.recipients.len(),
            })?;
            let Some(pos) = header.recipients.iter().position(|id| *id == key.id()) else {
                return Err(Error::NotARecipient {
                    key: key.id().to_hex(),
                    named: header
                        .recipients
                        .iter()
                        .map(Hash::to_hex)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            let start = FIXED_HEADER_LEN + pos * STANZA_LEN;
            let stanza = &raw[start..start + STANZA_LEN];
            let content = open_stanza(key, stanza, &raw[..FIXED_HEADER_LEN])?;
            cipher = Some(content.cipher(Hash::of(&raw)));
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&raw);
        Ok(Self {
            r,
            offset: header.len,
            header,
            hasher,
            count: 0,
            cipher,
            last: RecordKind::TrustRoot,
            seen: HashSet::new(),
            done: false,
        })
    }

    /// The header.
    #[must_use]
    pub const fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes consumed so far.
    #[must_use]
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<()> {
        fill(&mut self.r, buf, self.offset)?;
        self.hasher.update(buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn malformed(&self, start: u64, reason: impl Into<String>) -> Error {
        Error::Malformed {
            index: self.count,
            offset: start,
            reason: reason.into(),
        }
    }

    /// The next record, or `None` once the end record has been checked and
    /// nothing follows it.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::Malformed`], [`Error::Corrupt`],
    /// [`Error::CorruptStream`], [`Error::Decrypt`], I/O.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.done {
            return Ok(None);
        }
        let start = self.offset;
        let before = self.hasher.clone();
        let (kind, id, payload) = if self.cipher.is_some() {
            let mut len = [0u8; 4];
            self.read(&mut len)?;
            let len = u32::from_le_bytes(len) as usize;
            let max = 1 + 32 + RecordKind::Chunk.max_payload() + TAG_LEN;
            if !(1 + 32 + TAG_LEN..=max).contains(&len) {
                return Err(self.malformed(start, format!("sealed length {len} out of range")));
            }
            let mut sealed = vec![0u8; len];
            self.read(&mut sealed)?;
            let plain = self
                .cipher
                .as_ref()
                .map_or_else(|| Ok(Vec::new()), |c| c.open(self.count, &sealed))?;
            let kind = RecordKind::from_byte(plain[0]).ok_or_else(|| {
                self.malformed(start, format!("unknown record kind {}", plain[0]))
            })?;
            let mut id = [0u8; 32];
            id.copy_from_slice(&plain[1..33]);
            let payload = plain[33..].to_vec();
            if payload.len() > kind.max_payload() {
                return Err(self.malformed(
                    start,
                    format!("{kind} of {} bytes is over its limit", payload.len()),
                ));
            }
            (kind, Hash(id), payload)
        } else {
            let mut head = [0u8; RECORD_HEAD_LEN];
            self.read(&mut head)?;
            let kind = RecordKind::from_byte(head[0])
                .ok_or_else(|| self.malformed(start, format!("unknown record kind {}", head[0])))?;
            let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > kind.max_payload() {
                return Err(
                    self.malformed(start, format!("{kind} of {len} bytes is over its limit"))
                );
            }
            let mut id = [0u8; 32];
            id.copy_from_slice(&head[5..]);
            let mut payload = vec![0u8; len];
            self.read(&mut payload)?;
            (kind, Hash(id), payload)
        };
        if kind < self.last {
            return Err(self.malformed(start, format!("a {kind} after a {}", self.last)));
        }
        self.last = kind;
        if kind == RecordKind::End {
            return self.end(start, &before, &id, &payload).map(|()| None);
        }
        if !self.seen.insert((kind, id)) {
            return Err(self.malformed(start, format!("{kind} {} appears twice", id.short())));
        }
        let item = match kind {
            RecordKind::Chunk => Item::Chunk(open_chunk(&id, &payload).ok_or_else(|| {
                if payload.len() < CHUNK_PREFIX_LEN || payload[0] > 1 {
                    self.malformed(start, "chunk record prefix is malformed")
                } else {
                    Error::corrupt(kind, &id)
                }
            })?),
            _ if Hash::of(&payload) != id => return Err(Error::corrupt(kind, &id)),
            RecordKind::TrustRoot => Item::TrustRoot(payload),
            RecordKind::Manifest => Item::Manifest(payload),
            _ => Item::Index(payload),
        };
        let number = self.count;
        self.count += 1;
        Ok(Some(Record {
            id,
            number,
            offset: start,
            size: self.offset - start,
            item,
        }))
    }

    fn end(
        &mut self,
        start: u64,
        before: &blake3::Hasher,
        id: &Hash,
        payload: &[u8],
    ) -> Result<()> {
        let count: [u8; 8] = payload
            .try_into()
            .map_err(|_| self.malformed(start, "end record payload is not 8 bytes"))?;
        let count = u64::from_le_bytes(count);
        if count != self.count {
            return Err(Error::CorruptStream(format!(
                "the end record counts {count} records, {} were read",
                self.count
            )));
        }
        if before.finalize().as_bytes() != id.as_bytes() {
            return Err(Error::CorruptStream(
                "the end record's digest does not match the bytes before it".into(),
            ));
        }
        let mut extra = [0u8; 1];
        match self.r.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => {
                return Err(self.malformed(self.offset, "bytes follow the end record"));
            }
            Err(e) => {
                return Err(Error::Io {
                    path: "bundle".into(),
                    source: e,
                });
            }
        }
        self.done = true;
        Ok(())
    }
}

/// A chunk record's raw content, if its prefix is well formed and it
/// decodes (bounded by its stated length) to bytes hashing to `id`.
fn open_chunk(id: &Hash, payload: &[u8]) -> Option<Vec<u8>> {
    let (&flags, rest) = payload.split_first()?;
    if flags > 1 || rest.len() < 4 {
        return None;
    }
    let raw_len = u32::from_le_bytes(rest[..4].try_into().ok()?);
    SentChunk {
        hash: *id,
        raw_len,
        compressed: flags == 1,
        bytes: rest[4..].to_vec(),
    }
    .open()
    .ok()
}
