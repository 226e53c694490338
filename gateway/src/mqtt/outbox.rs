//! The on-disk queue of MQTT messages not yet acknowledged by the broker.
//!
//! A redb database with two tables: `queue` (sequence number → topic and
//! payload, delivered in order, each exactly once acknowledged) and
//! `latest` (topic → payload: state such as the fleet summary, where only
//! the newest value matters). Every change is one durable commit, so a
//! message pushed is on disk when `push` returns, and survives SIGKILL or
//! a power cut.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::{Error, Result};

const QUEUE: TableDefinition<u64, (&str, &[u8])> = TableDefinition::new("queue");
const LATEST: TableDefinition<&str, &[u8]> = TableDefinition::new("latest");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Which outbox entry a message is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A queued event (a node report), by sequence number.
    Seq(u64),
    /// The latest state of a topic, with the BLAKE3 of the payload sent (a
    /// newer value replaces it and is sent again).
    Latest(String, [u8; 32]),
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its outbox entry.
    pub key: Key,
    /// The MQTT topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// The outbox. Invariant: `queue` holds at most `max` entries; every entry
/// removed without a PUBACK is counted in [`Outbox::dropped`].
pub struct Outbox {
    db: Database,
    path: PathBuf,
    max: u64,
}

fn db_err(path: &Path) -> impl Fn(redb::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`, keeping at most `max`
    /// queued messages.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file (unreadable, damaged, or in use by
    /// another process).
    pub fn open(path: &Path, max: u64) -> Result<Self> {
        let e = db_err(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let db = Database::create(path).map_err(|x| e(x.into()))?;
        let tx = db.begin_write().map_err(|x| e(x.into()))?;
        tx.open_table(QUEUE).map_err(|x| e(x.into()))?;
        tx.open_table(LATEST).map_err(|x| e(x.into()))?;
        tx.open_table(META).map_err(|x| e(x.into()))?;
        tx.commit().map_err(|x| e(x.into()))?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            max: max.max(1),
        })
    }

    /// Queues a message; durable on return. Past the limit the oldest
    /// queued message is dropped (and counted).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn push(&self, topic: &str, payload: &[u8]) -> Result<u64> {
        let e = db_err(&self.path);
        let tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        let seq;
        {
            let mut meta = tx.open_table(META).map_err(|x| e(x.into()))?;
            let next = meta
                .get("next")
                .map_err(|x| e(x.into()))?
                .map_or(1, |v| v.value());
            seq = next;
            meta.insert("next", next + 1).map_err(|x| e(x.into()))?;
            let mut q = tx.open_table(QUEUE).map_err(|x| e(x.into()))?;
            q.insert(seq, (topic, payload)).map_err(|x| e(x.into()))?;
            let mut dropped = 0;
            while q.len().map_err(|x| e(x.into()))? > self.max {
                if q.pop_first().map_err(|x| e(x.into()))?.is_none() {
                    break;
                }
                dropped += 1;
            }
            if dropped > 0 {
                let before = meta
                    .get("dropped")
                    .map_err(|x| e(x.into()))?
                    .map_or(0, |v| v.value());
                meta.insert("dropped", before + dropped)
                    .map_err(|x| e(x.into()))?;
            }
        }
        tx.commit().map_err(|x| e(x.into()))?;
        Ok(seq)
    }

    /// Sets the latest state of `topic`; durable on return.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn set_latest(&self, topic: &str, payload: &[u8]) -> Result<()> {
        let e = db_err(&self.path);
        let tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        tx.open_table(LATEST)
            .map_err(|x| e(x.into()))?
            .insert(topic, payload)
            .map_err(|x| e(x.into()))?;
        tx.commit().map_err(|x| e(x.into()))?;
        Ok(())
    }

    /// Up to `limit` queued messages with a sequence above `after`, in
    /// order.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn pending(&self, after: u64, limit: usize) -> Result<Vec<Message>> {
        let e = db_err(&self.path);
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let q = tx.open_table(QUEUE).map_err(|x| e(x.into()))?;
        let mut out = Vec::new();
        for row in q
            .range(after.saturating_add(1)..)
            .map_err(|x| e(x.into()))?
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row.map_err(|x| e(x.into()))?;
            let (topic, payload) = v.value();
            out.push(Message {
                key: Key::Seq(k.value()),
                topic: topic.to_string(),
                payload: payload.to_vec(),
            });
        }
        Ok(out)
    }

    /// Every latest state, by topic.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn latest(&self) -> Result<Vec<Message>> {
        let e = db_err(&self.path);
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let t = tx.open_table(LATEST).map_err(|x| e(x.into()))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|x| e(x.into()))? {
            let (k, v) = row.map_err(|x| e(x.into()))?;
            out.push(Message {
                key: Key::Latest(k.value().to_string(), *blake3::hash(v.value()).as_bytes()),
                topic: k.value().to_string(),
                payload: v.value().to_vec(),
            });
        }
        Ok(out)
    }

    /// The broker acknowledged `key`: a queued message is removed; a
    /// latest state is removed only if it was not replaced since.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn delivered(&self, key: &Key) -> Result<()> {
        let e = db_err(&self.path);
        let tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        match key {
            Key::Seq(seq) => {
                tx.open_table(QUEUE)
                    .map_err(|x| e(x.into()))?
                    .remove(*seq)
                    .map_err(|x| e(x.into()))?;
            }
            Key::Latest(topic, sent) => {
                let mut t = tx.open_table(LATEST).map_err(|x| e(x.into()))?;
                let same = t
                    .get(topic.as_str())
                    .map_err(|x| e(x.into()))?
                    .is_some_and(|v| blake3::hash(v.value()).as_bytes() == sent);
                if same {
                    t.remove(topic.as_str()).map_err(|x| e(x.into()))?;
                }
            }
        }
        tx.commit().map_err(|x| e(x.into()))?;
        Ok(())
    }

    /// Queued messages not yet acknowledged.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn len(&self) -> Result<u64> {
        let e = db_err(&self.path);
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        tx.open_table(QUEUE)
            .map_err(|x| e(x.into()))?
            .len()
            .map_err(|x| e(x.into()))
    }

    /// Whether nothing is queued.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Messages dropped because the queue was full.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn dropped(&self) -> Result<u64> {
        let e = db_err(&self.path);
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let meta = tx.open_table(META).map_err(|x| e(x.into()))?;
        Ok(meta
            .get("dropped")
            .map_err(|x| e(x.into()))?
            .map_or(0, |v| v.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_messages_survive_reopening_in_order_until_acknowledged() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("outbox.redb");
        {
            let o = Outbox::open(&path, 100).unwrap();
            for i in 0..5u8 {
                o.push("t", &[i]).unwrap();
            }
            o.set_latest("s", b"one").unwrap();
        }
        let o = Outbox::open(&path, 100).unwrap();
        let p = o.pending(0, 10).unwrap();
        assert_eq!(
            p.iter().map(|m| m.payload[0]).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        o.delivered(&p[0].key).unwrap();
        assert_eq!(o.len().unwrap(), 4);
        assert_eq!(o.pending(p[2].key_seq(), 10).unwrap().len(), 2);
        // A latest state replaced after it was sent stays until the new one
        // is acknowledged.
        let sent = o.latest().unwrap().remove(0);
        o.set_latest("s", b"two").unwrap();
        o.delivered(&sent.key).unwrap();
        assert_eq!(o.latest().unwrap()[0].payload, b"two");
        let newer = o.latest().unwrap().remove(0);
        o.delivered(&newer.key).unwrap();
        assert!(o.latest().unwrap().is_empty());
    }

    #[test]
    fn past_its_limit_the_outbox_drops_the_oldest_and_counts_them() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(&d.path().join("o.redb"), 3).unwrap();
        for i in 0..5u8 {
            o.push("t", &[i]).unwrap();
        }
        let p = o.pending(0, 10).unwrap();
        assert_eq!(
            p.iter().map(|m| m.payload[0]).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(o.dropped().unwrap(), 2);
    }

    impl Message {
        fn key_seq(&self) -> u64 {
            match self.key {
                Key::Seq(s) => s,
                Key::Latest(..) => 0,
            }
        }
    }
}
