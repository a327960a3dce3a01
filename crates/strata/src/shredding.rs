//! Crypto-shredding (feature `shredding`): the data of a subject's events is encrypted with
//! a key of that subject, kept in a stream of its own; forgetting the subject tombstones
//! that stream, and a scavenge then removes the key's bytes. Every copy of the events —
//! in the store, in exports, in brokers a connector fed — becomes unreadable at once, and
//! reads as [`Decrypted::KeyForgotten`], not as garbage. See `docs/TOOLKIT.md`.
//!
//! Cipher: ChaCha20-Poly1305 (RFC 8439) from the RustCrypto `chacha20poly1305` crate. An
//! AEAD, so a damaged or altered event is refused rather than decrypted into garbage; fast
//! and constant-time in plain software (AES-GCM is only both with AES instructions, which
//! not every server Strata runs on has); a random 96-bit nonce per event is safe for the
//! number of events one subject has (far below 2^32 per key).
//!
//! What is encrypted: the event's data. Its type and metadata stay readable (indexes, the
//! correlation and causation ids, upcasting need them), so personal data belongs in the
//! data. The stored data is `STRSHRD1`, one byte (1: the plaintext was JSON), the subject's
//! length (u16, big-endian) and bytes, the nonce, then the ciphertext with its tag; the
//! magic, flag, subject and event type are the AEAD's associated data.

use std::collections::HashMap;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use strata_core::{
    Bytes, ContentType, DeleteResult, Error as StoreError, EventStore, ExpectedRevision,
    ProposedEvent, ReadStreamOptions, RecordedEvent, StreamName, StreamSlice,
};

use crate::error::{Error, Result};

/// The first bytes of an encrypted event's data.
pub const SHREDDED_MAGIC: &[u8; 8] = b"STRSHRD1";
/// The category of the key streams by default: `subjectkey-<subject>`.
pub const KEY_CATEGORY_DEFAULT: &str = "subjectkey";
/// The type of the event holding a subject's key.
pub const KEY_EVENT_TYPE: &str = "SubjectKeyCreated";

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// An event read through a [`Shredder`].
#[derive(Clone, Debug, PartialEq)]
pub enum Decrypted {
    /// The event was not encrypted: as stored.
    Plain(RecordedEvent),
    /// Decrypted: the event with its original data and content type.
    Clear {
        subject: String,
        event: RecordedEvent,
    },
    /// The subject was forgotten: its key is gone, the data cannot be read by anyone.
    /// `event` is the stored event (its type and metadata are still readable).
    KeyForgotten {
        subject: String,
        event: RecordedEvent,
    },
}

/// Encrypts events for subjects and decrypts them, with keys in streams of `store`.
pub struct Shredder<S: ?Sized> {
    store: Arc<S>,
    category: String,
}

impl<S: EventStore + ?Sized> Shredder<S> {
    /// Keys in `subjectkey-<subject>` streams of `store`.
    pub fn new(store: Arc<S>) -> Self {
        Self {
            store,
            category: KEY_CATEGORY_DEFAULT.to_owned(),
        }
    }

    /// Keys in `<category>-<subject>` streams instead (keep them out of exports and
    /// connectors: they are what makes the copies readable).
    pub fn with_key_category(mut self, category: impl Into<String>) -> Self {
        self.category = category.into();
        self
    }

    /// The stream holding `subject`'s key.
    ///
    /// # Errors
    /// [`strata_core::Error::InvalidStreamName`] when the subject cannot be part of one.
    pub fn key_stream(&self, subject: &str) -> Result<StreamName> {
        Ok(StreamName::new(format!("{}-{subject}", self.category))?)
    }

    /// `event` with its data encrypted under `subject`'s key (created on first use).
    ///
    /// # Errors
    /// [`Error::SubjectForgotten`] when the subject was forgotten (no new key is made for
    /// it: its key stream is tombstoned); store errors; a subject longer than 65,535 bytes.
    pub async fn encrypt(&self, subject: &str, event: ProposedEvent) -> Result<ProposedEvent> {
        let key = match self.key(subject).await? {
            KeyState::Found(key) => key,
            KeyState::Forgotten => {
                return Err(Error::SubjectForgotten {
                    subject: subject.to_owned(),
                });
            }
            KeyState::Missing => self.create_key(subject).await?,
        };
        let subject_length = u16::try_from(subject.len()).map_err(|_| Error::Encode {
            event_type: String::from(&event.event_type),
            reason: "a subject is at most 65,535 bytes".into(),
        })?;
        let json = event.content_type == ContentType::Json;
        let mut header = Vec::with_capacity(SHREDDED_MAGIC.len() + 3 + subject.len());
        header.extend_from_slice(SHREDDED_MAGIC);
        header.push(u8::from(json));
        header.extend_from_slice(&subject_length.to_be_bytes());
        header.extend_from_slice(subject.as_bytes());
        let cipher = ChaCha20Poly1305::new(&key);
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(&header, &event.event_type);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &event.data,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Encode {
                event_type: String::from(&event.event_type),
                reason: "the data cannot be encrypted".into(),
            })?;
        let mut data = header;
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&sealed);
        Ok(ProposedEvent {
            data: Bytes::from(data),
            content_type: ContentType::Binary,
            ..event
        })
    }

    /// `event` decrypted, or [`Decrypted::KeyForgotten`], or as it is when it was not
    /// encrypted.
    ///
    /// # Errors
    /// [`Error::Shredded`] when the data was altered or damaged, or was encrypted under a
    /// key this store never had; store errors.
    pub async fn decrypt(&self, event: RecordedEvent) -> Result<Decrypted> {
        self.decrypt_all(vec![event])
            .await
            .map(|mut events| events.remove(0))
    }

    /// Several events at once, reading each subject's key once.
    ///
    /// # Errors
    /// As [`Shredder::decrypt`].
    pub async fn decrypt_all(&self, events: Vec<RecordedEvent>) -> Result<Vec<Decrypted>> {
        let mut keys: HashMap<String, KeyState> = HashMap::new();
        let mut decrypted = Vec::with_capacity(events.len());
        for event in events {
            let Some(envelope) = Envelope::parse(&event)? else {
                decrypted.push(Decrypted::Plain(event));
                continue;
            };
            let subject = envelope.subject.to_owned();
            if !keys.contains_key(&subject) {
                let state = self.key(&subject).await?;
                keys.insert(subject.clone(), state);
            }
            let key = match &keys[&subject] {
                KeyState::Found(key) => *key,
                KeyState::Forgotten => {
                    decrypted.push(Decrypted::KeyForgotten { subject, event });
                    continue;
                }
                KeyState::Missing => {
                    return Err(shredded(
                        &event,
                        format!("no key of subject {subject} was ever stored here"),
                    ));
                }
            };
            let aad = associated_data(envelope.header, &event.event_type);
            let plain = ChaCha20Poly1305::new(&key)
                .decrypt(
                    Nonce::from_slice(envelope.nonce),
                    Payload {
                        msg: envelope.sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| {
                    shredded(
                        &event,
                        "the data was altered or damaged (tag mismatch)".into(),
                    )
                })?;
            let content_type = if envelope.json {
                ContentType::Json
            } else {
                ContentType::Binary
            };
            decrypted.push(Decrypted::Clear {
                subject,
                event: RecordedEvent {
                    data: Bytes::from(plain),
                    content_type,
                    ..event
                },
            });
        }
        Ok(decrypted)
    }

    /// Forgets `subject`: tombstones its key stream, so no read returns the key and no new
    /// key is ever made for it. The key's bytes stay in the store until a scavenge removes
    /// them: run `strata forget <key stream>` (engine or PostgreSQL), or
    /// `PostgresStore::forget`, or a scavenge, right after. Returns the key stream.
    ///
    /// # Errors
    /// Store errors.
    pub async fn forget(&self, subject: &str) -> Result<(StreamName, Option<DeleteResult>)> {
        let stream = self.key_stream(subject)?;
        match self
            .store
            .tombstone_stream(&stream, ExpectedRevision::Any)
            .await
        {
            Ok(result) => Ok((stream, Some(result))),
            Err(StoreError::StreamDeleted { .. }) => Ok((stream, None)),
            Err(error) => Err(error.into()),
        }
    }

    async fn key(&self, subject: &str) -> Result<KeyState> {
        let stream = self.key_stream(subject)?;
        let slice = match self
            .store
            .read_stream(&stream, ReadStreamOptions::forwards().max_count(1))
            .await
        {
            Ok(slice) => slice,
            Err(StoreError::StreamDeleted { .. }) => return Ok(KeyState::Forgotten),
            Err(error) => return Err(error.into()),
        };
        let StreamSlice::Found { events, .. } = slice else {
            return Ok(KeyState::Missing);
        };
        let Some(first) = events.first() else {
            // Soft-deleted or truncated away: forgotten as well.
            return Ok(KeyState::Forgotten);
        };
        if first.data.len() != KEY_BYTES {
            return Err(Error::Shredded {
                subject: subject.to_owned(),
                reason: format!(
                    "the key in {stream} is {} bytes, not {KEY_BYTES}",
                    first.data.len()
                ),
            });
        }
        Ok(KeyState::Found(*Key::from_slice(&first.data)))
    }

    async fn create_key(&self, subject: &str) -> Result<Key> {
        let stream = self.key_stream(subject)?;
        let key = ChaCha20Poly1305::generate_key(&mut OsRng);
        let event = ProposedEvent::binary(KEY_EVENT_TYPE, key.to_vec());
        match self
            .store
            .append(&stream, ExpectedRevision::NoStream, vec![event])
            .await
        {
            Ok(_) => Ok(key),
            // Another writer made the key first (or forgot the subject meanwhile).
            Err(StoreError::WrongExpectedRevision { .. } | StoreError::StreamDeleted { .. }) => {
                match self.key(subject).await? {
                    KeyState::Found(key) => Ok(key),
                    _ => Err(Error::SubjectForgotten {
                        subject: subject.to_owned(),
                    }),
                }
            }
            Err(error) => Err(error.into()),
        }
    }
}

enum KeyState {
    Found(Key),
    Forgotten,
    Missing,
}

/// The parts of an encrypted event's data.
struct Envelope<'a> {
    header: &'a [u8],
    json: bool,
    subject: &'a str,
    nonce: &'a [u8],
    sealed: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// `None` when the data does not start with the magic (not encrypted).
    fn parse(event: &'a RecordedEvent) -> Result<Option<Self>> {
        let data: &[u8] = &event.data;
        if !data.starts_with(SHREDDED_MAGIC) {
            return Ok(None);
        }
        let damaged = || shredded(event, "its envelope is cut short or malformed".into());
        let fixed = SHREDDED_MAGIC.len() + 3;
        if data.len() < fixed {
            return Err(damaged());
        }
        let json = match data[SHREDDED_MAGIC.len()] {
            0 => false,
            1 => true,
            _ => return Err(damaged()),
        };
        let length = usize::from(u16::from_be_bytes([
            data[SHREDDED_MAGIC.len() + 1],
            data[SHREDDED_MAGIC.len() + 2],
        ]));
        let header_end = fixed + length;
        if data.len() < header_end + NONCE_BYTES + 16 {
            return Err(damaged());
        }
        let subject = std::str::from_utf8(&data[fixed..header_end]).map_err(|_| damaged())?;
        Ok(Some(Self {
            header: &data[..header_end],
            json,
            subject,
            nonce: &data[header_end..header_end + NONCE_BYTES],
            sealed: &data[header_end + NONCE_BYTES..],
        }))
    }
}

fn associated_data(header: &[u8], event_type: &str) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(event_type.as_bytes());
    aad
}

fn shredded(event: &RecordedEvent, reason: String) -> Error {
    Error::Shredded {
        subject: String::new(),
        reason: format!(
            "event at revision {} of {} cannot be decrypted: {reason}",
            event.revision, event.stream
        ),
    }
}
