//! [`Live`]: a value the binary may replace while services read it, such
//! as the severity rules after a configuration reload.
//!
//! A reader takes the current value ([`Live::get`], an `Arc`) once per
//! decision and decides on it alone, so one decision never sees half of
//! an old configuration and half of a new one; the decision itself stays
//! pure, with the configuration as an input.

use std::sync::{Arc, RwLock};

/// A shared, replaceable value. Clones share it.
pub struct Live<T: ?Sized> {
    current: Arc<RwLock<Arc<T>>>,
}

impl<T: ?Sized> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live { current: self.current.clone() }
    }
}

impl<T: ?Sized> Live<T> {
    /// Starts with `value`.
    pub fn new(value: Arc<T>) -> Live<T> {
        Live { current: Arc::new(RwLock::new(value)) }
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
}
