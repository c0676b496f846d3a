//! Deliberately broken pagers, only with the `sim-variants` feature, which
//! only `klaxon-sim` enables: the simulation runs each to show that its
//! invariants catch a bug in the service's own fold. Nothing else selects
//! one ([`crate::Pager::new_broken`]), so a build that unifies the feature
//! in still pages correctly.

use std::sync::Arc;

use klaxon_log::Record;

/// Says whether the bus delivered `record` to the pager more than once.
pub type Repeated = Arc<dyn Fn(&Record) -> bool + Send + Sync>;

/// A broken pager.
#[derive(Clone)]
pub enum Broken {
    /// An acknowledgement folded while a page of its incident is still
    /// being delivered (decided, its delivery not yet recorded) is
    /// dropped: the pager goes on as if nobody had acknowledged.
    AckIgnoredWhileDelivering,
    /// A page event the bus delivered twice (`Repeated` says which) is
    /// folded twice, as a consumer that lost its "skip what was seen"
    /// would; but for `page.responder_paged.v1`, whose second fold the
    /// domain refuses with a debug assertion (as it does a repeated
    /// incident event's request for a responder): a loud failure, not the
    /// quiet one to catch.
    DuplicateApplied(Repeated),
}

impl std::fmt::Debug for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::AckIgnoredWhileDelivering => f.write_str("AckIgnoredWhileDelivering"),
            Broken::DuplicateApplied(_) => f.write_str("DuplicateApplied"),
        }
    }
}
