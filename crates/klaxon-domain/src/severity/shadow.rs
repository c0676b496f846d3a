//! Shadowed rules: a later rule that can never give its severity because an
//! earlier rule matches every incident it matches.
//!
//! Rule `A` (earlier) shadows rule `B` (later) when **every condition of `A`
//! is implied by some single condition of `B`**, so whatever satisfies `B`
//! satisfies `A`, and first match wins. One condition implies another when:
//!
//! - `reported_via = X` implies `reported_via = Y` when X ⊆ Y (the same for
//!   `service`, and for `service_tier`);
//! - `service = X` implies `service_tier = T` when every service of X is
//!   catalogued with a tier in T;
//! - `words = X` implies `words = Y` when every phrase of X contains some
//!   phrase of Y as a run of its words (`"card declined"` implies
//!   `"declined"`);
//! - `customers_affected_at_least = n` implies `customers_affected_at_least
//!   = m` when n ≥ m, and implies `multi_customer = true` when n ≥ 2 (two
//!   customers affected always make an incident multi-customer; the
//!   converse does not hold: a manager may mark one customer's impact
//!   multi-customer);
//! - `multi_customer = b` implies itself; a label implies the same label
//!   with the same value.
//!
//! This is sound (every reported rule really is shadowed) but not complete:
//! shadowing that only a combination of `B`'s conditions proves (say `A`
//! wants tier 1 or 2, `B` names a tier-1 service and a tier-2 one through
//! two conditions) is not found.

use super::{Condition, Rules};
use crate::catalog::ServiceCatalog;

/// A rule that can never give its severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadowed {
    /// The index of the rule that can never win.
    pub rule: usize,
    /// The index of the earlier rule that wins instead.
    pub by: usize,
}

impl Rules {
    /// Every rule shadowed by an earlier one (the first such earlier rule),
    /// in rule order; see the [module documentation](self).
    pub fn shadowed(&self, catalog: &ServiceCatalog) -> Vec<Shadowed> {
        let mut found = Vec::new();
        for (later, b) in self.rules.iter().enumerate() {
            let by = self.rules[..later]
                .iter()
                .position(|a| a.conditions.iter().all(|ca| b.conditions.iter().any(|cb| implies(cb, ca, catalog))));
            if let Some(by) = by {
                found.push(Shadowed { rule: later, by });
            }
        }
        found
    }
}

/// Whether every value of `x` is in `y`.
fn subset<T: PartialEq>(x: &[T], y: &[T]) -> bool {
    x.iter().all(|v| y.contains(v))
}

/// Whether every incident satisfying `b` satisfies `a`.
fn implies(b: &Condition, a: &Condition, catalog: &ServiceCatalog) -> bool {
    use Condition as C;
    match (b, a) {
        (C::ReportedVia(x), C::ReportedVia(y)) => subset(x, y),
        (C::Service(x), C::Service(y)) => subset(x, y),
        (C::ServiceTier(x), C::ServiceTier(y)) => subset(x, y),
        (C::Service(x), C::ServiceTier(y)) => x.iter().all(|s| catalog.tier(s).is_some_and(|t| y.contains(&t))),
        (C::MultiCustomer(x), C::MultiCustomer(y)) => x == y,
        (C::CustomersAtLeast(n), C::CustomersAtLeast(m)) => n >= m,
        (C::CustomersAtLeast(n), C::MultiCustomer(true)) => *n >= 2,
        (C::Words(x), C::Words(y)) => x.iter().all(|phrase| {
            y.iter().any(|word| {
                !word.tokens.is_empty()
                    && phrase.tokens.windows(word.tokens.len()).any(|run| run == word.tokens.as_slice())
            })
        }),
        (C::Label { name: n1, value: v1 }, C::Label { name: n2, value: v2 }) => n1 == n2 && v1 == v2,
        _ => false,
    }
}
