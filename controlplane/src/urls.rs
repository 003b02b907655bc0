//! Parsing etcd-style URL lists (`http://127.0.0.1:2379,http://10.0.0.1:2379`) into addresses.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context, Result};

/// Splits a comma-separated URL list, dropping empty items.
pub fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The socket address a listen URL names (`http://host:port`). `https` is refused until TLS
/// is configured.
pub fn listen_addr(url: &str) -> Result<SocketAddr> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => bail!("{url}: TLS listeners are not supported yet; use http://"),
        Some((scheme, _)) => bail!("{url}: unsupported URL scheme {scheme:?} (expected http)"),
        None => bail!("{url}: not a URL (expected http://HOST:PORT)"),
    };
    let host_port = rest.trim_end_matches('/');
    if host_port.contains('/') {
        bail!("{url}: a listen URL must not have a path");
    }
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    if !has_port {
        bail!("{url}: a listen URL needs a port (http://HOST:PORT)");
    }
    let mut addrs = host_port
        .to_socket_addrs()
        .with_context(|| format!("{url}: cannot resolve host"))?;
    // `localhost` resolves to loopback; prefer IPv4 as etcd users expect 127.0.0.1.
    let all: Vec<SocketAddr> = addrs.by_ref().collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| all.first())
        .copied()
        .with_context(|| format!("{url}: host resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        assert_eq!(
            listen_addr("http://127.0.0.1:2379").unwrap(),
            "127.0.0.1:2379".parse().unwrap()
        );
        assert_eq!(
            listen_addr("http://localhost:2379/").unwrap(),
            "127.0.0.1:2379".parse().unwrap()
        );
    }

    #[test]
    fn refuses_urls_without_port_or_with_other_schemes() {
        assert!(listen_addr("http://127.0.0.1").is_err());
        assert!(listen_addr("unix://x:1").is_err());
        assert!(listen_addr("127.0.0.1:2379").is_err());
    }

    #[test]
    fn splits_lists() {
        assert_eq!(
            split_list("http://a:1, http://b:2,"),
            vec!["http://a:1", "http://b:2"]
        );
    }
}
