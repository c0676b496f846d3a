//! Certificates made at run time for TLS tests: a throwaway CA and a
//! certificate it signs for `localhost` and 127.0.0.1. No key lives in the
//! repository.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// PEM files written into a folder.
pub struct Certificates {
    /// The CA's certificate (what clients trust).
    pub ca: PathBuf,
    /// The server certificate, signed by the CA.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Another CA's certificate, which signed nothing of ours.
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params, key)
}

/// Generates a CA and a server certificate into `dir`.
pub fn generate(dir: &Path) -> Certificates {
    let (ca_params, ca_key) = ca("Klaxon test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("the CA certificate");
    let key = KeyPair::generate().expect("a server key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("parameters");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).expect("the server certificate");
    let (other_params, other_key) = ca("Some other CA");
    let other = other_params.self_signed(&other_key).expect("another CA certificate");
    let files = Certificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        other_ca: dir.join("other-ca.pem"),
    };
    std::fs::write(&files.ca, ca_cert.pem()).unwrap();
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    std::fs::write(&files.other_ca, other.pem()).unwrap();
    files
}
