//! Any bytes POSTed to `/v2/enqueue`: the parser returns an event or the
//! list of problems (PagerDuty's `errors[]`), never panics.
#![no_main]

use klaxon_intake::http::parse_pagerduty;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    match parse_pagerduty(bytes) {
        Ok(event) => {
            let _ = event.incident_dedup_key();
            let _ = event.report_command();
        }
        Err(problems) => assert!(!problems.is_empty(), "a refusal names at least one problem"),
    }
});
