//! End-to-end tests: real `klaxond` processes, the real `klaxon` CLI, real
//! gRPC over loopback.
#![allow(missing_docs)]

mod alertmanager;
mod audit;
mod auth;
mod catalog;
mod distributed;
mod email;
mod history;
mod layers;
mod lifecycle;
mod limits;
mod log_group;
mod metrics;
mod notifier;
mod oncall;
mod one_mapping;
mod otlp;
mod paging;
mod policy;
mod readme;
mod rebuild;
mod replicas;
mod retries;
mod review;
mod review_service;
mod room;
mod seams;
mod snapshots;
mod status_page;
mod tls;
mod trends;
