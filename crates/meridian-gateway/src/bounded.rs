//! A map in this process bounded in bytes and in time: when it is full the
//! oldest entries leave first, and an entry past its time to live is gone.
//! The response cache and the stored Responses keep their entries here when
//! the state backend is memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// A key: a SHA-256 of what identifies the entry.
pub type Key = [u8; 32];

struct Slot<V> {
    value: Arc<V>,
    expires: Instant,
    size: usize,
}

struct Inner<V> {
    map: HashMap<Key, Slot<V>>,
    order: VecDeque<Key>,
    bytes: usize,
}

/// Entries of `V`, at most `max_bytes` of them (as their owners size them).
pub struct Bounded<V> {
    inner: parking_lot::Mutex<Inner<V>>,
    max_bytes: usize,
}

impl<V> std::fmt::Debug for Bounded<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, bytes) = self.usage();
        f.debug_struct("Bounded")
            .field("entries", &entries)
            .field("bytes", &bytes)
            .finish()
    }
}

impl<V> Bounded<V> {
    /// An empty map holding at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Bounded {
            inner: parking_lot::Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            }),
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        }
    }

    /// The entry under `key`, if it is still fresh.
    pub fn get(&self, key: &Key) -> Option<Arc<V>> {
        let mut m = self.inner.lock();
        let slot = m.map.get(key)?;
        if slot.expires > Instant::now() {
            return Some(slot.value.clone());
        }
        if let Some(old) = m.map.remove(key) {
            m.bytes -= old.size;
        }
        None
    }

    /// Keeps `value` (`size` bytes) under `key` for `ttl`; a value larger
    /// than the whole map is not kept.
    pub fn put(&self, key: Key, value: V, size: usize, ttl: Duration) {
        if size > self.max_bytes {
            return;
        }
        let mut m = self.inner.lock();
        if let Some(old) = m.map.remove(&key) {
            m.bytes -= old.size;
        }
        while m.bytes + size > self.max_bytes {
            let Some(oldest) = m.order.pop_front() else {
                break;
            };
            if let Some(old) = m.map.remove(&oldest) {
                m.bytes -= old.size;
            }
        }
        m.bytes += size;
        m.order.push_back(key);
        m.map.insert(
            key,
            Slot {
                value: Arc::new(value),
                expires: Instant::now() + ttl,
                size,
            },
        );
        // Keys replaced or removed stay in `order`; drop them when the queue
        // grows well past the map.
        if m.order.len() > 2 * m.map.len() + 64 {
            let Inner { map, order, .. } = &mut *m;
            order.retain(|k| map.contains_key(k));
        }
    }

    /// Removes `key`; whether a fresh entry was there.
    pub fn remove(&self, key: &Key) -> bool {
        let mut m = self.inner.lock();
        match m.map.remove(key) {
            Some(old) => {
                m.bytes -= old.size;
                old.expires > Instant::now()
            }
            None => false,
        }
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (usize, usize) {
        let m = self.inner.lock();
        (m.map.len(), m.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_the_oldest_go_first_when_full_and_removal_says_so() {
        let b: Bounded<u8> = Bounded::new(3000);
        for i in 0..4u8 {
            b.put([i; 32], i, 1000, Duration::from_secs(60));
        }
        assert!(b.get(&[0; 32]).is_none(), "oldest evicted");
        assert_eq!(b.get(&[3; 32]).as_deref(), Some(&3));
        assert_eq!(b.usage(), (3, 3000));
        b.put([9; 32], 9, 4000, Duration::from_secs(60));
        assert!(b.get(&[9; 32]).is_none(), "larger than the map");
        assert!(b.remove(&[2; 32]));
        assert!(!b.remove(&[2; 32]));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(b.get(&[3; 32]).is_none(), "expired");
        assert!(
            !b.remove(&[1; 32]),
            "expired entries are not reported removed"
        );
    }
}
