//! The one back-off of every dial loop: after each failure the wait doubles, from a first
//! wait up to a ceiling; a success starts it over.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The wait before the next try at one peer.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits `first` after the first failure, doubling up to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max: max.max(first),
            next: first,
        }
    }

    /// How long to wait after one more failure.
    pub(crate) fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// A try succeeded: the next failure waits `first` again.
    pub(crate) fn succeeded(&mut self) {
        self.next = self.first;
    }
}

/// The back-offs of many peers, by key: when each may be tried again.
#[derive(Debug)]
pub(crate) struct Backoffs<K> {
    first: Duration,
    max: Duration,
    by_key: HashMap<K, (Instant, Backoff)>,
}

impl<K: Hash + Eq> Backoffs<K> {
    /// Every key waits `first` after its first failure, doubling up to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Backoffs<K> {
        Backoffs {
            first,
            max,
            by_key: HashMap::new(),
        }
    }

    /// Whether `key` may be tried at `now`.
    pub(crate) fn ready(&self, key: &K, now: Instant) -> bool {
        self.by_key.get(key).is_none_or(|(at, _)| *at <= now)
    }

    /// A try at `key` failed at `now`.
    pub(crate) fn failed(&mut self, key: K, now: Instant) {
        let (first, max) = (self.first, self.max);
        let (at, backoff) = self
            .by_key
            .entry(key)
            .or_insert_with(|| (now, Backoff::new(first, max)));
        *at = now + backoff.failed();
    }

    /// A try at `key` succeeded, or `key` is news (found anew, moved): try it at once.
    pub(crate) fn forget(&mut self, key: &K) {
        self.by_key.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_and_start_over_after_a_success() {
        let s = Duration::from_secs(1);
        let mut b = Backoff::new(s, 5 * s);
        let waits: Vec<_> = (0..5).map(|_| b.failed()).collect();
        assert_eq!(waits, [s, 2 * s, 4 * s, 5 * s, 5 * s]);
        b.succeeded();
        assert_eq!(b.failed(), s);
    }

    #[test]
    fn each_key_waits_on_its_own() {
        let s = Duration::from_secs(10);
        let now = Instant::now();
        let mut b = Backoffs::new(s, 100 * s);
        assert!(b.ready(&"a", now));
        b.failed("a", now);
        assert!(!b.ready(&"a", now + s / 2));
        assert!(b.ready(&"a", now + s));
        assert!(b.ready(&"b", now));
        b.failed("a", now + s);
        assert!(
            !b.ready(&"a", now + 2 * s),
            "the second failure waits twice as long"
        );
        assert!(b.ready(&"a", now + 3 * s));
        b.forget(&"a");
        assert!(b.ready(&"a", now + s));
    }
}
