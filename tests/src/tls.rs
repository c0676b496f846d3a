//! Certificates made at run time for TLS tests: a throwaway cluster CA, the
//! certificate every Klaxon process of a test uses (as server and as
//! client), client certificates for the CLI and raw clients, and another
//! CA with a client certificate of its own. No key lives in the repository.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// PEM files written into a folder.
pub struct Certificates {
    /// The cluster CA's certificate (what clients trust, and what servers
    /// requiring client certificates check them against).
    pub ca: PathBuf,
    /// The Klaxon processes' certificate, signed by the CA, for `localhost`
    /// and 127.0.0.1, with both extended key usages (`serverAuth` and
    /// `clientAuth`): each process serves with it and presents it when it
    /// calls another.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// A client certificate (`clientAuth` only) signed by the cluster CA:
    /// what a person's CLI presents.
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
    /// A certificate signed by the cluster CA for `serverAuth` only: a
    /// server certificate, which rustls refuses as a client certificate.
    pub server_only_cert: PathBuf,
    /// Its private key.
    pub server_only_key: PathBuf,
    /// Another CA's certificate, which signed nothing of ours.
    pub other_ca: PathBuf,
    /// A client certificate (`clientAuth`) signed by the other CA.
    pub other_client_cert: PathBuf,
    /// Its private key.
    pub other_client_key: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params, key)
}

/// A leaf certificate for `names` with `usages`, signed by `issuer`; writes
/// it and its key to `cert` and `key`.
fn leaf(
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    common_name: &str,
    names: &[&str],
    usages: Vec<ExtendedKeyUsagePurpose>,
    cert: &Path,
    key: &Path,
) {
    let key_pair = KeyPair::generate().expect("a key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("parameters");
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages;
    let certificate = params.signed_by(&key_pair, issuer).expect("a certificate");
    std::fs::write(cert, certificate.pem()).unwrap();
    std::fs::write(key, key_pair.serialize_pem()).unwrap();
}

/// Generates the CAs and certificates into `dir`.
pub fn generate(dir: &Path) -> Certificates {
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let files = Certificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("klaxond.pem"),
        key: dir.join("klaxond.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        server_only_cert: dir.join("server-only.pem"),
        server_only_key: dir.join("server-only.key"),
        other_ca: dir.join("other-ca.pem"),
        other_client_cert: dir.join("other-client.pem"),
        other_client_key: dir.join("other-client.key"),
    };
    let (ca_params, ca_key) = ca("Klaxon test CA");
    std::fs::write(&files.ca, ca_params.self_signed(&ca_key).expect("the CA certificate").pem()).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let loopback = ["localhost", "127.0.0.1"];
    leaf(&issuer, "klaxond", &loopback, vec![ServerAuth, ClientAuth], &files.cert, &files.key);
    leaf(&issuer, "ana", &[], vec![ClientAuth], &files.client_cert, &files.client_key);
    leaf(&issuer, "server-only", &loopback, vec![ServerAuth], &files.server_only_cert, &files.server_only_key);

    let (other_params, other_key) = ca("Some other CA");
    std::fs::write(&files.other_ca, other_params.self_signed(&other_key).expect("another CA certificate").pem())
        .unwrap();
    let other_issuer = Issuer::from_params(&other_params, &other_key);
    leaf(&other_issuer, "mallory", &[], vec![ClientAuth], &files.other_client_cert, &files.other_client_key);
    files
}
