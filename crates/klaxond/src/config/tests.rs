use std::path::{Path, PathBuf};

use super::{Config, TlsConfig};

/// A CA and a certificate it signed (both usages), as PEM files in `dir`:
/// (ca, cert, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &Issuer::from_params(&ca_params, &ca_key)).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("cert.key"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn check(tls: TlsConfig) -> Result<(), String> {
    Config { tls, ..Config::default() }.validate().map(drop)
}

#[test]
fn mutual_tls_is_checked_at_start_and_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not PEM\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let full = TlsConfig {
        cert_file: Some(cert.clone()),
        key_file: Some(key.clone()),
        ca_file: Some(ca.clone()),
        client_ca_file: Some(ca.clone()),
    };

    check(full.clone()).expect("one CA, one certificate: mutual TLS");
    let server = full.server().unwrap().expect("a server configuration");
    tonic::transport::Server::builder().tls_config(server).expect("rustls takes it, client CA included");
    assert!(full.grpc_server().is_ok());
    assert!(full.client().unwrap().is_some(), "the internal clients call over TLS");

    let cases = [
        (TlsConfig { client_ca_file: Some(ca.clone()), ..TlsConfig::default() }, "tls.client_ca_file"),
        (TlsConfig { cert_file: None, ..full.clone() }, "cert_file and key_file go together"),
        (TlsConfig { client_ca_file: Some(junk.clone()), ..full.clone() }, "tls.client_ca_file"),
        (TlsConfig { client_ca_file: Some(missing.clone()), ..full.clone() }, "tls.client_ca_file: cannot read"),
        (TlsConfig { ca_file: Some(junk.clone()), ..full.clone() }, "tls.ca_file"),
        (TlsConfig { cert_file: Some(key.clone()), ..full.clone() }, "tls.cert_file"),
        (TlsConfig { key_file: Some(cert.clone()), ..full.clone() }, "tls.key_file"),
    ];
    for (tls, expected) in cases {
        let error = check(tls.clone()).expect_err(&format!("{tls:?} should be refused"));
        assert!(error.contains(expected), "{tls:?}: {error:?} should name {expected:?}");
    }
}

#[test]
fn log_group_and_cluster_log_lists_are_checked_and_errors_name_the_key() {
    let group = |extra: &str| -> Result<(), String> {
        let text = format!(
            "[cluster]\nlog = \"127.0.0.1:7601, 127.0.0.1:7602,127.0.0.1:7603\"\n\n[log_group]\nnode_id = 1\n\
             nodes = [{{ id = 1, address = \"127.0.0.1:7601\" }}, {{ id = 2, address = \"127.0.0.1:7602\", \
             raft_address = \"127.0.0.1:9002\" }}]\n{extra}"
        );
        let config: Config = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.validate().map(drop)
    };
    group("").expect("a valid group");
    let cases = [
        ("append_timeout_ms = 0", "append_timeout_ms"),
        ("heartbeat_interval_ms = 2000", "heartbeat_interval_ms"),
        ("election_timeout_max_ms = 10", "election_timeout_max_ms"),
        ("snapshot_every_entries = 0", "snapshot_every_entries"),
        ("quorum = 2", "unknown field"),
    ];
    for (extra, expected) in cases {
        let error = group(extra).expect_err(&format!("{extra:?} should be refused"));
        assert!(error.contains(expected), "{extra}: {error:?} should name {expected:?}");
    }
    let bad_node = Config {
        log_group: Some(klaxon_raft::Options {
            node_id: 1,
            nodes: vec![
                klaxon_raft::NodeOptions { id: 1, address: "127.0.0.1:7601".into(), raft_address: None },
                klaxon_raft::NodeOptions { id: 1, address: "127.0.0.1:7602".into(), raft_address: None },
            ],
            ..klaxon_raft::Options::default()
        }),
        ..Config::default()
    };
    let error = bad_node.validate().map(drop).unwrap_err();
    assert!(error.contains("log_group.nodes[1].id"), "{error}");
    let mut bad_list = Config::default();
    bad_list.cluster.log = "127.0.0.1:7601,nowhere".into();
    let error = bad_list.validate().map(drop).unwrap_err();
    assert!(error.contains("cluster.log: address 2"), "{error}");
}

#[test]
fn the_compose_log_group_configuration_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/compose/klaxon-log-group.toml");
    let (config, _) = Config::load(Some(&path)).expect("deploy/compose/klaxon-log-group.toml loads");
    let group = config.log_group.expect("a [log_group] table");
    assert_eq!(group.nodes.len(), 3);
    assert_eq!(group.node_id, 0, "each node gets --node-id");
    assert_eq!(config.cluster.log.split(',').count(), 3);
}

#[test]
fn the_email_intake_is_configured_under_intake_and_errors_name_the_key() {
    let load = |text: &str| -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map(drop)?;
        Ok(config)
    };
    let config = load(
        "[intake]\nsmtp_listen = \"127.0.0.1:2525\"\n[intake.email]\nmessage_bytes_max = 65536\n\
         [intake.email.senders]\n\"Desk@Example.com\" = \"desk\"\n",
    )
    .expect("a valid e-mail intake");
    assert_eq!(config.intake.smtp_listen, Some("127.0.0.1:2525".parse().unwrap()));
    assert_eq!(config.intake.email.senders["Desk@Example.com"], "desk");
    assert_eq!(Config::default().intake.smtp_listen, None, "off by default");
    let cases = [
        ("[intake]\nsmtp_listen = \"127.0.0.1:2525\"\n", "intake.email.senders: the e-mail intake"),
        ("[intake.email.senders]\n\"nobody\" = \"desk\"\n", "intake.email.senders: \"nobody\""),
        ("[intake.email]\nmessage_bytes_max = 10\n", "intake.email.message_bytes_max"),
        ("[intake.email]\ntls = true\n", "unknown field `tls`"),
    ];
    for (text, expected) in cases {
        let error = load(text).map(drop).expect_err(&format!("{text:?} should be refused"));
        assert!(error.contains(expected), "{text}: {error:?} should name {expected:?}");
    }
}

#[test]
fn the_example_configuration_tightens_gold_customers_and_an_unknown_tier_names_its_key() {
    use klaxon_domain::ids::{CustomerId, Severity};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/klaxon.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (_, validated) = Config::load(Some(&path)).expect("deploy/klaxon.toml loads");
    let paging = validated.paging.expect("a [paging] table");
    let acme = CustomerId::new("acme").unwrap();
    assert_eq!(paging.resolve_window(Severity::Sev1, []).map(|w| w.num_minutes()), Some(240));
    assert_eq!(paging.resolve_window(Severity::Sev1, [&acme]).map(|w| w.num_minutes()), Some(60));
    let bad = text.replace("tier = \"gold\"", "tier = \"platinum\"");
    assert_ne!(bad, text);
    let config: Config = toml::from_str(&bad).unwrap();
    let error = config.validate().map(drop).unwrap_err();
    assert!(error.starts_with("customers[0].tier: \"platinum\" is not a tier"), "{error}");
}

#[test]
fn loading_warns_about_holes_of_the_next_days_without_refusing() {
    let text = r#"
[oncall]
coverage_warning_days = 4

[[schedules]]
name = "office-hours"
time_zone = "Europe/Berlin"
[[schedules.layers]]
name = "day"
participants = ["ana"]
shift = "1d"
handoff = "09:00"
start = "2026-01-01"
active = { from = "09:00", to = "17:00", days = ["mon", "tue", "wed", "thu", "fri"] }
"#;
    let config: Config = toml::from_str(text).unwrap();
    let validated = config.validate().expect("holes are no reason to refuse a configuration");
    // Friday 2026-12-04 12:00 UTC, four days: the weekend, Monday's night.
    let now = "2026-12-04T12:00:00Z".parse().unwrap();
    let lines = super::coverage_warnings(&validated.schedules, now, config.oncall.coverage_warning_days);
    assert_eq!(
        lines,
        [
            "warning: schedules: office-hours has nobody on call during [2026-12-04T16:00:00Z, 2026-12-07T08:00:00Z)",
            "warning: schedules: office-hours has nobody on call during [2026-12-07T16:00:00Z, 2026-12-08T08:00:00Z)",
        ]
    );
    assert!(super::coverage_warnings(&validated.schedules, now, 0).is_empty(), "0 turns the check off");
    let too_far: Config = toml::from_str("[oncall]\ncoverage_warning_days = 93\n").unwrap();
    let error = too_far.validate().map(drop).unwrap_err();
    assert!(error.starts_with("oncall.coverage_warning_days: 93 must be at most 92"), "{error}");
}

#[test]
fn memory_eviction_time_is_a_duration_with_a_unit_and_errors_name_the_key() {
    let load = |text: &str| -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map(drop)?;
        Ok(config)
    };
    let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
    assert_eq!(Config::default().memory.evict_closed_after, hours(24), "24h by default");
    for (text, expected) in
        [("90m", hours(1) + hours(1) / 2), ("7d", hours(168)), ("0s", hours(0)), ("3650d", hours(87_600))]
    {
        let config = load(&format!("[memory]\nevict_closed_after = \"{text}\"\n")).expect(text);
        assert_eq!(config.memory.evict_closed_after, expected, "{text}");
    }
    for (text, expected) in [
        ("[memory]\nevict_closed_after = \"24\"\n", "not a number followed by s, m, h or d"),
        ("[memory]\nevict_closed_after = \"h\"\n", "does not start with a whole number"),
        ("[memory]\nevict_closed_after = \"-1h\"\n", "not a number followed by"),
        ("[memory]\nevict_closed_after = \"3651d\"\n", "longer than 3650 days"),
        ("[memory]\nevict_closed_after = 86400\n", "evict_closed_after"),
        ("[memory]\nkeep = true\n", "unknown field `keep`"),
    ] {
        let error = load(text).map(drop).expect_err(&format!("{text:?} should be refused"));
        assert!(error.contains(expected), "{text}: {error:?} should name {expected:?}");
        assert!(error.contains("evict_closed_after") || error.contains("keep"), "{text}: {error:?} names the key");
    }
}
