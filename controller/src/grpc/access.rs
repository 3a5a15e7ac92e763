//! Who may speak Raft to a controller that speaks mutual TLS.
//!
//! TLS lets in any certificate of the cluster's authority. On top of that a
//! controller can be told which certificate names may speak Raft to it
//! (its peers): a broker's or an admin's certificate then cannot vote,
//! append entries or install a snapshot, whatever it holds. A caller is
//! known by the DNS names in its certificate's subject alternative names.
//!
//! The metadata port is not limited by name. Its `Metadata` service takes
//! proposals of any command, because brokers carry out Kafka clients'
//! requests with them (creating and deleting topics among them), so a
//! limit on the `Admin` service alone would guard little; a policy per
//! command and caller is not done.
//!
//! A pattern is a name, or `*.` and a name: the wildcard stands for
//! exactly one leftmost label, as in TLS host names (`*.ctl.ns.svc` matches
//! `c-0.ctl.ns.svc`, not `ctl.ns.svc` or `a.b.ctl.ns.svc`). A certificate
//! whose own name is a wildcard matches the same wildcard pattern. Names
//! compare without regard to case.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use tonic::{Request, Status};

/// A certificate name, or `*.` and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern(String);

impl FromStr for NamePattern {
    type Err = String;

    fn from_str(s: &str) -> Result<NamePattern, String> {
        let p = s.trim().to_ascii_lowercase();
        let name = p.strip_prefix("*.").unwrap_or(&p);
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!(
                "{s:?} is not a certificate name pattern (a DNS name, or `*.` and a DNS name)"
            ));
        }
        Ok(NamePattern(p))
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl NamePattern {
    /// Whether a certificate name matches.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        if name == self.0 {
            return true;
        }
        match self.0.strip_prefix("*.") {
            Some(suffix) => name
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && first != "*" && rest == suffix),
            None => false,
        }
    }
}

/// Which certificate names may speak Raft; `None`: any certificate of the
/// authority (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Who may speak Raft to this controller (its port for peers).
    pub peers: Option<Vec<NamePattern>>,
}

impl Access {
    /// Whether anything is restricted.
    pub fn restricts(&self) -> bool {
        self.peers.is_some()
    }

    pub(crate) fn peer_gate(&self) -> Gate {
        Gate::new(self.peers.as_deref(), "RaftPeer")
    }
}

/// The DNS names of the caller's (end-entity) certificate.
pub fn certificate_names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(cert) => cert.valid_dns_names().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}

/// Lets a request through if the caller's certificate has a name one of
/// the patterns matches; refuses it with `PERMISSION_DENIED` otherwise.
#[derive(Clone)]
pub(crate) struct Gate {
    allowed: Option<Arc<[NamePattern]>>,
    service: &'static str,
    /// The last certificate let through (its DER bytes): Raft calls come
    /// thousands a second from the same few peers, and comparing bytes is
    /// cheaper than parsing the certificate again.
    passed: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

impl Gate {
    fn new(allowed: Option<&[NamePattern]>, service: &'static str) -> Gate {
        Gate {
            allowed: allowed.map(Arc::from),
            service,
            passed: Arc::default(),
        }
    }
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(allowed) = &self.allowed else {
            return Ok(request);
        };
        let chain = request.peer_certs();
        let cert = chain.as_ref().and_then(|c| c.first());
        let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        if cert.is_some() && passed.as_ref() == cert {
            return Ok(request);
        }
        let names = cert.map(certificate_names).unwrap_or_default();
        if names
            .iter()
            .any(|name| allowed.iter().any(|p| p.matches(name)))
        {
            *passed = cert.cloned();
            return Ok(request);
        }
        let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        Err(Status::permission_denied(format!(
            "a certificate for {names:?} may not call {}; this controller lets {} call it",
            self.service,
            allowed.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NamePattern {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_match_one_leftmost_label() {
        let w = p("*.ctl.ns.svc");
        assert!(w.matches("c-0.ctl.ns.svc"));
        assert!(w.matches("C-0.CTL.ns.svc"));
        assert!(
            w.matches("*.ctl.ns.svc"),
            "the same wildcard in a certificate"
        );
        assert!(!w.matches("ctl.ns.svc"));
        assert!(!w.matches("a.b.ctl.ns.svc"));
        assert!(!w.matches("c-0.ctl.ns.svc.cluster.local"));
        assert!(!w.matches("*.*.ctl.ns.svc"));
        let exact = p("admin.floe");
        assert!(exact.matches("ADMIN.floe"));
        assert!(!exact.matches("x.admin.floe"));
        assert!(!exact.matches("admin.floe.evil"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "*", "*.", "a..b", "a.*.b", "**.a", "a b", "x.*"] {
            assert!(bad.parse::<NamePattern>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(p(" Broker-0.Floe ").to_string(), "broker-0.floe");
    }
}
