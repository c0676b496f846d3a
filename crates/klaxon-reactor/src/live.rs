//! [`Live`]: a value the binary may replace while services read it, such
//! as the severity rules after a configuration reload.
//!
//! A reader takes the current value ([`Live::get`], an `Arc`) once per
//! decision and decides on it alone, so one decision never sees half of
//! an old configuration and half of a new one; the decision itself stays
//! pure, with the configuration as an input.
//!
//! A reader that sleeps until something is due (the shift notices) also
//! waits on [`Live::changed`], so that a replaced value is looked at at
//! once, not at its next wake-up; [`Live::generation`] counts the
//! replacements, for barriers.

use std::sync::{Arc, RwLock};

use tokio::sync::watch;

/// A shared, replaceable value. Clones share it.
pub struct Live<T: ?Sized> {
    current: Arc<RwLock<Arc<T>>>,
    /// How many times it was replaced.
    generation: Arc<watch::Sender<u64>>,
}

impl<T: ?Sized> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live { current: self.current.clone(), generation: self.generation.clone() }
    }
}

impl<T: ?Sized> Live<T> {
    /// Starts with `value`.
    pub fn new(value: Arc<T>) -> Live<T> {
        Live { current: Arc::new(RwLock::new(value)), generation: Arc::new(watch::channel(0).0) }
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        // A writer only swaps an `Arc`, so a poisoned lock still holds a
        // whole value.
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces it; readers see `value` from their next [`Live::get`].
    pub fn set(&self, value: Arc<T>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = value;
        self.generation.send_modify(|g| *g += 1);
    }

    /// How many times it was replaced (0 for a value never replaced). The
    /// count goes up after the new value is in place: a reader that sees
    /// generation `n` and then calls [`Live::get`] gets the `n`th value or
    /// a later one.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Resolves once the generation is past `seen` (at once if it is
    /// already).
    pub async fn changed(&self, seen: u64) {
        let mut receiver = self.generation.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = receiver.wait_for(|g| *g > seen).await;
    }
}

impl<T: ?Sized> From<Arc<T>> for Live<T> {
    fn from(value: Arc<T>) -> Live<T> {
        Live::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_sees_what_was_set_and_a_taken_value_stays_whole() {
        let live = Live::new(Arc::new(1));
        let reader = live.clone();
        let taken = reader.get();
        live.set(Arc::new(2));
        assert_eq!((*taken, *reader.get()), (1, 2));
    }

    #[tokio::test]
    async fn a_replacement_is_counted_and_wakes_a_waiting_reader() {
        let live = Live::new(Arc::new(1));
        let reader = live.clone();
        assert_eq!(reader.generation(), 0);
        let waiting = tokio::spawn(async move {
            reader.changed(0).await;
            (reader.generation(), *reader.get())
        });
        live.set(Arc::new(2));
        assert_eq!(waiting.await.unwrap(), (1, 2));
        // Already past: at once.
        live.changed(0).await;
    }
}
