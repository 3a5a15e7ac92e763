//! Test support: a throwaway certificate authority and certificates it
//! signs, written as PEM files the way a `kubernetes.io/tls` Secret holds
//! them (`ca.crt`, `tls.crt`, `tls.key`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub struct Authority {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// One party's files.
#[derive(Debug, Clone)]
pub struct Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Authority {
    pub fn new(name: &str) -> anyhow::Result<Authority> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A certificate for `names` (DNS names or IP addresses), signed by
    /// this authority: `(certificate PEM, private key PEM)`.
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<(String, String)> {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// [`Authority::issue`], written under `dir/<party>/`.
    pub fn write(&self, dir: &Path, party: &str, names: &[&str]) -> anyhow::Result<Files> {
        let (cert, key) = self.issue(names)?;
        let at = dir.join(party);
        std::fs::create_dir_all(&at)?;
        let files = Files {
            ca: at.join("ca.crt"),
            cert: at.join("tls.crt"),
            key: at.join("tls.key"),
        };
        std::fs::write(&files.ca, &self.ca_pem)?;
        std::fs::write(&files.cert, cert)?;
        std::fs::write(&files.key, key)?;
        Ok(files)
    }
}
