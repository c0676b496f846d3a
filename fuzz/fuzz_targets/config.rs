//! Any text as a configuration file: parsing and validating the sections
//! the domain checks (services, severity rules, schedules, paging,
//! notifier) returns a value or an error naming a key, never panics.
#![no_main]

use klaxon_domain::notifier::NotifierSectionConfig;
use klaxon_domain::oncall::SchedulesConfig;
use klaxon_domain::paging::PagingFileConfig;
use klaxon_domain::severity::{ServiceCatalogConfig, SeverityConfig};
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize)]
struct File {
    #[serde(default)]
    services: ServiceCatalogConfig,
    severity: Option<SeverityConfig>,
    #[serde(default)]
    schedules: SchedulesConfig,
    #[serde(flatten)]
    paging: Option<PagingFileConfig>,
    notifier: Option<NotifierSectionConfig>,
}

fuzz_target!(|text: &str| {
    let Ok(file) = toml::from_str::<File>(text) else { return };
    let catalog = file.services.validate("services");
    let schedules = file.schedules.validate("schedules");
    if let Some(severity) = &file.severity {
        if let (Ok(rules), Ok(catalog)) = (severity.validate("severity"), &catalog) {
            let _ = rules.check_services(catalog, "severity");
        }
    }
    if let (Some(paging), Ok(schedules)) = (&file.paging, &schedules) {
        if let (Ok(paging), Ok(catalog)) = (paging.validate("", schedules), &catalog) {
            let _ = paging.check_catalog("", catalog);
        }
    }
    if let Some(notifier) = &file.notifier {
        let _ = notifier.validate("notifier");
    }
});
