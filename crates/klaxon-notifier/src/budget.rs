//! One budget of live feeds per principal, shared by every way of watching
//! the status: the gRPC `StatusFeed.Subscribe` stream and the status
//! page's event streams. A principal at its limit is refused another of
//! either kind until one of its feeds ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Default of the budget's limit (`[limits] feeds_per_principal`).
pub const FEEDS_PER_PRINCIPAL_DEFAULT: usize = 4;

/// The live feeds each principal holds, and the most one may; cheap to
/// clone (clones share the count).
#[derive(Clone, Debug)]
pub struct FeedBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    open: Mutex<HashMap<String, usize>>,
    max: AtomicUsize,
}

/// A refused feed: the principal already holds its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{principal} has {} open (status feeds and status pages together), the most one principal may; close one first",
    klaxon_domain::text::counted(*open as u64, "live feed")
)]
pub struct FeedsExhausted {
    /// Who asked.
    pub principal: String,
    /// How many feeds it holds.
    pub open: usize,
}

impl klaxon_domain::class::Classify for FeedsExhausted {
    fn class(&self) -> klaxon_domain::class::Class {
        klaxon_domain::class::Class::ResourceExhausted
    }
}

impl FeedBudget {
    /// A budget of `max` feeds per principal (at least 1).
    pub fn new(max: usize) -> FeedBudget {
        FeedBudget { inner: Arc::new(Inner { open: Mutex::default(), max: AtomicUsize::new(max.max(1)) }) }
    }

    /// Sets the limit (at least 1) for feeds opened from now on; feeds
    /// already open stay open.
    pub fn set_max(&self, max: usize) {
        self.inner.max.store(max.max(1), Ordering::Relaxed);
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.inner.max.load(Ordering::Relaxed)
    }

    /// How many feeds `principal` holds now.
    pub fn open(&self, principal: &str) -> usize {
        self.inner.open.lock().expect("feed budget lock").get(principal).copied().unwrap_or(0)
    }

    /// Counts a new feed of `principal`, or refuses it at the limit. The
    /// feed counts until the returned permit is dropped.
    pub fn take(&self, principal: &str) -> Result<FeedPermit, FeedsExhausted> {
        let mut open = self.inner.open.lock().expect("feed budget lock");
        let count = open.entry(principal.to_owned()).or_default();
        if *count >= self.max() {
            let open = *count;
            return Err(FeedsExhausted { principal: principal.to_owned(), open });
        }
        *count += 1;
        Ok(FeedPermit { budget: self.clone(), principal: principal.to_owned() })
    }
}

/// One counted feed; dropping it (when the feed ends) frees its place.
#[derive(Debug)]
pub struct FeedPermit {
    budget: FeedBudget,
    principal: String,
}

impl Drop for FeedPermit {
    fn drop(&mut self) {
        let mut open = self.budget.inner.open.lock().expect("feed budget lock");
        if let Some(count) = open.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_count_per_principal_until_dropped() {
        let budget = FeedBudget::new(2);
        let a1 = budget.take("ceo").unwrap();
        let _a2 = budget.clone().take("ceo").unwrap();
        let refused = budget.take("ceo").unwrap_err();
        assert_eq!(refused, FeedsExhausted { principal: "ceo".into(), open: 2 });
        assert!(refused.to_string().starts_with("ceo has 2 live feeds open"), "{refused}");
        let _other = budget.take("cfo").expect("another principal has its own count");
        drop(a1);
        assert_eq!(budget.open("ceo"), 1);
        let _a3 = budget.take("ceo").expect("a dropped feed frees its place");
        budget.set_max(1);
        assert!(budget.take("cfo").is_err());
    }
}
