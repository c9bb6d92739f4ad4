//! The pool: the endpoints the picker chooses among, from a file or from flags. Each endpoint
//! is an energyllm gateway (one per GPU instance) that Envoy dials at `ip:port`, and whose
//! `/metrics` page the picker reads. A Kubernetes `InferencePool` watcher would fill the same
//! list; until there is one, the operator lists the gateways (a headless Service's addresses).

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

/// The endpoints, in the order given (ties in score go to the earlier one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    endpoints: Vec<Endpoint>,
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
    /// No endpoint at all.
    #[error("{origin}: the pool has no endpoint; list at least one gateway")]
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointEntry {
    address: String,
    metrics_url: Option<String>,
}

impl Pool {
    /// A pool from a TOML file of `[[endpoint]]` tables, each with `address = "ip:port"` and an
    /// optional `metrics_url`.
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
        Pool::new(endpoints, &path.display().to_string())
    }

    /// A pool from `ip:port` addresses (the `--endpoint` flags), metrics on each address.
    pub fn from_addresses(addresses: &[String]) -> Result<Pool, PoolError> {
        let origin = "--endpoint";
        let endpoints = addresses
            .iter()
            .map(|a| parse_address(a, origin).map(Endpoint::at))
            .collect::<Result<Vec<_>, _>>()?;
        Pool::new(endpoints, origin)
    }

    fn new(endpoints: Vec<Endpoint>, origin: &str) -> Result<Pool, PoolError> {
        if endpoints.is_empty() {
            return Err(PoolError::Empty { origin: origin.to_owned() });
        }
        let mut seen = BTreeSet::new();
        for e in &endpoints {
            if !seen.insert(e.address) {
                return Err(PoolError::Duplicate { origin: origin.to_owned(), address: e.address });
            }
        }
        Ok(Pool { endpoints })
    }

    /// The endpoints, in order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
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
    }
}
