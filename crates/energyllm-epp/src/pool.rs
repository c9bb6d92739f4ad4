//! The pool: the endpoints the picker chooses among, from a file or from flags. Each endpoint
//! is an energyllm gateway (one per GPU instance) that Envoy dials at `ip:port`, and whose
//! `/metrics` page the picker reads. Endpoints are listed, or found by a DNS name that resolves
//! to every gateway (a Kubernetes headless Service), re-resolved as pods come and go. A
//! Kubernetes `InferencePool` watcher would fill the same list; there is none yet.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One endpoint of the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where Envoy sends the request, `ip:port`, exactly as it goes into
    /// `x-gateway-destination-endpoint`.
    pub address: SocketAddr,
    /// The gateway's metrics page: `http://{address}/metrics` unless the file says otherwise.
    pub metrics_url: String,
}

impl Endpoint {
    /// An endpoint whose metrics are served on its own address, as the gateway does.
    pub fn at(address: SocketAddr) -> Endpoint {
        Endpoint { address, metrics_url: format!("http://{address}/metrics") }
    }
}

/// A DNS name whose addresses are endpoints: `host:port`, each resolved address serving its
/// metrics at `metrics_path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// `host:port`, as given.
    pub name: String,
    /// The metrics page's path on each address. Default: `/metrics`.
    pub metrics_path: String,
}

impl Service {
    /// The endpoint at one of the name's addresses.
    pub fn endpoint(&self, address: SocketAddr) -> Endpoint {
        Endpoint { address, metrics_url: format!("http://{address}{}", self.metrics_path) }
    }
}

/// The listed endpoints, in the order given (ties in score go to the earlier one), and the DNS
/// names that add more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    endpoints: Vec<Endpoint>,
    services: Vec<Service>,
}

/// Why a pool could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The file could not be read.
    #[error("cannot read the pool file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not the expected TOML.
    #[error(
        "the pool file {path} is not a pool ([[endpoint]] tables with `address = \"ip:port\"`): {message}"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// What TOML said, with its line.
        message: String,
    },
    /// An address is not `ip:port`.
    #[error("{origin}: endpoint {address:?} is not `ip:port` (the protocol routes to an IP address and port, not a name)")]
    Address {
        /// The file and entry, or the flag.
        origin: String,
        /// The text given.
        address: String,
    },
    /// A metrics URL is not http(s).
    #[error("{origin}: metrics_url {url:?} is not an http:// or https:// URL")]
    MetricsUrl {
        /// The file and entry.
        origin: String,
        /// The text given.
        url: String,
    },
    /// The same address twice.
    #[error("{origin}: endpoint {address} is listed twice")]
    Duplicate {
        /// The file, or the flag.
        origin: String,
        /// The repeated address.
        address: SocketAddr,
    },
    /// A metrics path does not start with `/`.
    #[error("{origin}: metrics_path {path:?} must start with `/` (the path on each resolved address)")]
    MetricsPath {
        /// The file and entry.
        origin: String,
        /// The text given.
        path: String,
    },
    /// A service name is not `host:port`.
    #[error("{origin}: service {name:?} is not `host:port` (a DNS name and the gateways' port)")]
    ServiceName {
        /// The file and entry, or the flag.
        origin: String,
        /// The text given.
        name: String,
    },
    /// No endpoint at all.
    #[error("{origin}: the pool has no endpoint; list at least one gateway or a service")]
    Empty {
        /// The file, or the flag.
        origin: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    #[serde(default)]
    endpoint: Vec<EndpointEntry>,
    #[serde(default)]
    service: Vec<ServiceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    address: String,
    metrics_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointEntry {
    address: String,
    metrics_url: Option<String>,
}

impl Pool {
    /// A pool from a TOML file of `[[endpoint]]` tables, each with `address = "ip:port"` and an
    /// optional `metrics_url`, and `[[service]]` tables, each with `address = "host:port"` and an
    /// optional `metrics_path`.
    pub fn from_file(path: &Path) -> Result<Pool, PoolError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PoolError::Read { path: path.to_owned(), source })?;
        Pool::from_toml(&text, path)
    }

    /// A pool from the text of a pool file; `path` names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Pool, PoolError> {
        let file: PoolFile = toml::from_str(text)
            .map_err(|e| PoolError::Parse { path: path.to_owned(), message: e.to_string() })?;
        let mut endpoints = Vec::with_capacity(file.endpoint.len());
        for (i, e) in file.endpoint.into_iter().enumerate() {
            let origin = format!("{}, endpoint {}", path.display(), i + 1);
            let address = parse_address(&e.address, &origin)?;
            let metrics_url = match e.metrics_url {
                None => Endpoint::at(address).metrics_url,
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => url,
                Some(url) => return Err(PoolError::MetricsUrl { origin, url }),
            };
            endpoints.push(Endpoint { address, metrics_url });
        }
        let mut services = Vec::with_capacity(file.service.len());
        for (i, e) in file.service.into_iter().enumerate() {
            let origin = format!("{}, service {}", path.display(), i + 1);
            let metrics_path = match e.metrics_path {
                None => "/metrics".to_owned(),
                Some(p) if p.starts_with('/') => p,
                Some(path) => return Err(PoolError::MetricsPath { origin, path }),
            };
            services.push(Service { name: parse_service(&e.address, &origin)?, metrics_path });
        }
        Pool::new(endpoints, services, &path.display().to_string())
    }

    /// A pool from `ip:port` addresses (the `--endpoint` flags), metrics on each address.
    pub fn from_addresses(addresses: &[String]) -> Result<Pool, PoolError> {
        Pool::from_flags(addresses, &[])
    }

    /// A pool from `--endpoint ip:port` and `--service host:port` flags.
    pub fn from_flags(addresses: &[String], services: &[String]) -> Result<Pool, PoolError> {
        let endpoints = addresses
            .iter()
            .map(|a| parse_address(a, "--endpoint").map(Endpoint::at))
            .collect::<Result<Vec<_>, _>>()?;
        let services = services
            .iter()
            .map(|n| {
                Ok(Service { name: parse_service(n, "--service")?, metrics_path: "/metrics".to_owned() })
            })
            .collect::<Result<Vec<_>, PoolError>>()?;
        let origin = if addresses.is_empty() { "--service" } else { "--endpoint" };
        Pool::new(endpoints, services, origin)
    }

    fn new(endpoints: Vec<Endpoint>, services: Vec<Service>, origin: &str) -> Result<Pool, PoolError> {
        if endpoints.is_empty() && services.is_empty() {
            return Err(PoolError::Empty { origin: origin.to_owned() });
        }
        let mut seen = BTreeSet::new();
        for e in &endpoints {
            if !seen.insert(e.address) {
                return Err(PoolError::Duplicate { origin: origin.to_owned(), address: e.address });
            }
        }
        Ok(Pool { endpoints, services })
    }

    /// The listed endpoints, in order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The DNS names that add endpoints.
    pub fn services(&self) -> &[Service] {
        &self.services
    }
}

fn parse_service(text: &str, origin: &str) -> Result<String, PoolError> {
    let bad = || PoolError::ServiceName { origin: origin.to_owned(), name: text.to_owned() };
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(['/', ' ']) || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(text.trim().to_owned())
}

fn parse_address(text: &str, origin: &str) -> Result<SocketAddr, PoolError> {
    text.trim()
        .parse()
        .map_err(|_| PoolError::Address { origin: origin.to_owned(), address: text.to_owned() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_pool_file_reads_addresses_and_defaults_metrics_to_the_address() {
        let text = "[[endpoint]]\naddress = \"10.0.0.1:8000\"\n\n[[endpoint]]\naddress = \"[::1]:9000\"\nmetrics_url = \"http://10.0.0.2:9100/metrics\"\n";
        let pool = Pool::from_toml(text, Path::new("pool.toml")).unwrap();
        let e = pool.endpoints();
        assert_eq!(e[0].metrics_url, "http://10.0.0.1:8000/metrics");
        assert_eq!(e[1].address.to_string(), "[::1]:9000");
        assert_eq!(e[1].metrics_url, "http://10.0.0.2:9100/metrics");
    }

    #[test]
    fn bad_pools_say_which_file_entry_and_what_to_do() {
        let err = |t: &str| Pool::from_toml(t, Path::new("p.toml")).unwrap_err().to_string();
        assert!(err("[[endpoint]]\naddress = \"gw-0:8000\"\n").contains("p.toml, endpoint 1"));
        assert!(err("[[endpoint]]\naddress = \"gw-0:8000\"\n").contains("not `ip:port`"));
        assert!(err("[[endpoint]]\naddres = \"1.2.3.4:1\"\n").contains("unknown field"));
        assert!(err("").contains("no endpoint"));
        let twice = "[[endpoint]]\naddress = \"1.2.3.4:1\"\n[[endpoint]]\naddress = \"1.2.3.4:1\"\n";
        assert!(err(twice).contains("listed twice"));
        let url = "[[endpoint]]\naddress = \"1.2.3.4:1\"\nmetrics_url = \"1.2.3.4:1/metrics\"\n";
        assert!(err(url).contains("not an http://"));
        let missing = Pool::from_file(Path::new("/nonexistent/pool.toml")).unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/pool.toml"), "{missing}");
        let flag = Pool::from_addresses(&["localhost:80".into()]).unwrap_err().to_string();
        assert!(flag.starts_with("--endpoint"), "{flag}");
        assert!(err("[[service]]\naddress = \"gw.svc\"\n")
            .contains("p.toml, service 1: service \"gw.svc\" is not `host:port`"));
        let service = Pool::from_flags(&[], &["gw:x".into()]).unwrap_err().to_string();
        assert!(service.starts_with("--service"), "{service}");
    }

    #[test]
    fn a_service_is_a_dns_name_whose_addresses_serve_metrics_on_a_path() {
        let text = "[[service]]\naddress = \"vllm.energyllm.svc.cluster.local:9000\"\n\n[[service]]\naddress = \"other:9100\"\nmetrics_path = \"/m\"\n";
        let pool = Pool::from_toml(text, Path::new("pool.toml")).unwrap();
        assert!(pool.endpoints().is_empty());
        let s = pool.services();
        assert_eq!(
            (s[0].name.as_str(), s[0].metrics_path.as_str()),
            ("vllm.energyllm.svc.cluster.local:9000", "/metrics")
        );
        let e = s[1].endpoint("10.0.0.7:9100".parse().unwrap());
        assert_eq!(e.metrics_url, "http://10.0.0.7:9100/m");
    }
}
