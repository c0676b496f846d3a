//! The crate graph says the architecture (STYLE.md rule 5): a crate uses
//! only crates of lower layers (domain; log, bus, channels and friends; the
//! service kit; the services; the binaries), so no service depends on
//! another, and nothing that does IO is reachable from `klaxon-domain`.
//! Read from `cargo metadata`, so a new dependency that breaks the rule
//! fails here, naming it.
//!
//! Dev-dependencies are not layered: a service's tests may drive the real
//! intake to produce their input (no mocks of our own components).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Every workspace crate and its layer. A crate missing here fails the
/// test: adding one means deciding where it belongs.
const LAYERS: &[(&str, u8)] = &[
    ("klaxon-domain", 0),
    // The base: storage, transport, wire formats, outbound channels, auth, telemetry.
    ("klaxon-log", 1),
    ("klaxon-proto", 1),
    ("klaxon-telemetry", 1),
    ("klaxon-bus", 1),
    // The replicated log: Raft over the log, served beside the log server.
    ("klaxon-raft", 1),
    ("klaxon-channels", 1),
    ("klaxon-auth", 1),
    // The service kit.
    ("klaxon-reactor", 2),
    // The services.
    ("klaxon-intake", 3),
    ("klaxon-severity", 3),
    ("klaxon-paging", 3),
    ("klaxon-notifier", 3),
    ("klaxon-review", 3),
    // The binaries.
    ("klaxond", 4),
    ("klaxon-cli", 4),
    // The whole-system simulation runs the services, as a binary wires them.
    ("klaxon-sim", 4),
    // Test support: real processes, receivers and collectors.
    ("klaxon-tests", 5),
];

/// The base layer's crates may use each other (the bus is built on the log
/// and the wire formats); every other layer only uses lower ones.
const SHARED_LAYER: u8 = 1;

/// Crates that do IO, which the pure domain must never reach.
const IO_CRATES: &[&str] = &["tokio", "sled", "tonic", "prost", "async-nats", "hyper", "axum"];

/// The workspace's `cargo metadata`, resolved for this machine (so that
/// crates of other platforms need not be downloaded).
fn metadata() -> Value {
    let rustc = std::process::Command::new("rustc").arg("-vV").output().expect("run rustc -vV");
    let version = String::from_utf8(rustc.stdout).unwrap();
    let host = version.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc -vV names the host");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline", "--filter-platform", host, "--manifest-path"])
        .arg(manifest)
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// Every broken rule, in words.
fn violations(metadata: &Value) -> Vec<String> {
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let members: BTreeSet<&str> =
        metadata["workspace_members"].as_array().unwrap().iter().map(|id| id.as_str().unwrap()).collect();
    let packages = metadata["packages"].as_array().unwrap();
    let name_of: BTreeMap<&str, &str> =
        packages.iter().map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap())).collect();
    let mut problems = Vec::new();
    for package in packages.iter().filter(|p| members.contains(p["id"].as_str().unwrap())) {
        let name = package["name"].as_str().unwrap();
        let Some(&layer) = layers.get(name) else {
            problems.push(format!("{name} has no layer in LAYERS"));
            continue;
        };
        for dependency in package["dependencies"].as_array().unwrap() {
            let on = dependency["name"].as_str().unwrap();
            let Some(&below) = layers.get(on) else { continue };
            if dependency["kind"].as_str() == Some("dev") {
                continue;
            }
            let allowed = below < layer || (below == layer && layer == SHARED_LAYER);
            if !allowed {
                problems.push(format!("{name} (layer {layer}) depends on {on} (layer {below})"));
            }
        }
    }
    // Everything the domain reaches through normal and build dependencies.
    let nodes = metadata["resolve"]["nodes"].as_array().unwrap();
    let edges: BTreeMap<&str, Vec<&str>> = nodes
        .iter()
        .map(|node| {
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].as_str() != Some("dev")))
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (node["id"].as_str().unwrap(), deps)
        })
        .collect();
    let domain = name_of.iter().find(|(_, n)| **n == "klaxon-domain").map(|(id, _)| *id).expect("klaxon-domain");
    let mut seen = BTreeSet::new();
    let mut todo = vec![domain];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        todo.extend(edges.get(id).into_iter().flatten().copied());
    }
    for id in seen {
        let name = name_of[id];
        if IO_CRATES.contains(&name) {
            problems.push(format!("klaxon-domain reaches the IO crate {name}"));
        }
    }
    problems
}

#[test]
fn every_crate_uses_only_lower_layers_and_the_domain_does_no_io() {
    assert_eq!(violations(&metadata()), Vec::<String>::new());
}

/// The check itself can fail: the real graph with one service depending on
/// another, the domain reaching tokio, and a crate without a layer.
#[test]
fn a_service_on_a_service_or_io_in_the_domain_is_named() {
    let mut broken = metadata();
    let packages = broken["packages"].as_array_mut().unwrap();
    let review = packages.iter_mut().find(|p| p["name"] == "klaxon-review").unwrap();
    review["dependencies"].as_array_mut().unwrap().push(serde_json::json!({"name": "klaxon-paging", "kind": null}));
    let tokio = packages.iter().find(|p| p["name"] == "tokio").unwrap()["id"].clone();
    let domain = packages.iter().find(|p| p["name"] == "klaxon-domain").unwrap()["id"].clone();
    let nodes = broken["resolve"]["nodes"].as_array_mut().unwrap();
    let node = nodes.iter_mut().find(|n| n["id"] == domain).unwrap();
    node["deps"].as_array_mut().unwrap().push(serde_json::json!({"pkg": tokio, "dep_kinds": [{"kind": null}]}));
    let telemetry = broken["packages"].as_array_mut().unwrap().iter_mut().find(|p| p["name"] == "klaxon-telemetry");
    telemetry.unwrap()["name"] = "klaxon-newcomer".into();
    assert_eq!(
        violations(&broken),
        [
            "klaxon-review (layer 3) depends on klaxon-paging (layer 3)",
            "klaxon-newcomer has no layer in LAYERS",
            "klaxon-domain reaches the IO crate tokio",
        ]
    );
}

/// What `cargo tree -p <root>` shows: the root's dependencies of every kind
/// (its tests' too), then everything they reach through normal and build
/// dependencies.
fn tree(metadata: &Value, root: &str) -> BTreeSet<String> {
    let packages = metadata["packages"].as_array().unwrap();
    let name_of: BTreeMap<&str, &str> =
        packages.iter().map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap())).collect();
    let nodes = metadata["resolve"]["nodes"].as_array().unwrap();
    let deps_of = |id: &str, dev: bool| -> Vec<String> {
        let node = nodes.iter().find(|n| n["id"] == id).unwrap();
        node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| dev || d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].as_str() != Some("dev")))
            .map(|d| d["pkg"].as_str().unwrap().to_owned())
            .collect()
    };
    let root = name_of.iter().find(|(_, n)| **n == root).map(|(id, _)| *id).expect("the root is a package");
    let mut seen = BTreeSet::new();
    let mut todo = deps_of(root, true);
    while let Some(id) = todo.pop() {
        if seen.insert(id.clone()) {
            todo.extend(deps_of(&id, false));
        }
    }
    seen.iter().map(|id| name_of[id.as_str()].to_owned()).collect()
}

/// The review service is a fold over the log and a gRPC API: neither it nor
/// its tests pull in intake, paging or the outbound channels (and with them
/// HTTP clients and HMAC code). Its tests that need the real intake live in
/// `review_service.rs` here.
#[test]
fn the_review_crate_reaches_no_intake_paging_or_channels_not_even_in_its_tests() {
    let tree = tree(&metadata(), "klaxon-review");
    assert!(tree.contains("klaxon-log"), "the walk sees the review crate's dependencies: {tree:?}");
    let unwanted: Vec<&str> =
        ["klaxon-intake", "klaxon-paging", "klaxon-channels", "klaxon-notifier", "klaxon-severity"]
            .into_iter()
            .filter(|c| tree.contains(*c))
            .collect();
    assert_eq!(unwanted, Vec::<&str>::new(), "cargo tree -p klaxon-review shows them");
}
