//! Any bytes POSTed to `/v1/alertmanager`: the parser returns a
//! notification or the list of problems, never panics, and every command
//! it plans for an accepted notification is one the domain accepts in form
//! (the property tests check the same over generated payloads).
#![no_main]

use klaxon_intake::http::parse_alertmanager;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    match parse_alertmanager(bytes) {
        Ok(notification) => {
            let _ = notification.dedup_key();
            let _ = notification.all_resolved();
            let _ = notification.plan();
        }
        Err(problems) => assert!(!problems.is_empty(), "a refusal names at least one problem"),
    }
});
