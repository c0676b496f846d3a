//! Integration tests of outbound channels: real HTTP deliveries to a real
//! receiver (axum) and real e-mail to a real SMTP server process (aiosmtpd)
//! on 127.0.0.1; no mocks.
#![allow(missing_docs)]

mod config;
mod email;
mod https;
mod log;
mod receiver;
mod slack;
mod smtp;
mod teams;
mod webhook;
