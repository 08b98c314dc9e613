//! Host names looked up as futures (hickory-resolver), instead of reqwest's default `getaddrinfo` on a blocking
//! thread.
//!
//! A blocking lookup cannot be cancelled: when a resolver swallows queries, every request dropped at its deadline
//! leaves a thread blocked in `getaddrinfo` for the C library's own timeouts (5 s per try, several tries), the
//! blocking pool that SQLite and the CPU pool's joins also use fills with them, and the runtime waits for them
//! before the process can exit (an `ask` printed its answer at 4.00 s and exited at 13.2 s). A lookup here is a
//! future: dropped with its request, bounded by the same deadline, holding no thread.
//!
//! The configuration is the system's (`/etc/resolv.conf`, and `/etc/hosts` first; without a readable
//! `/etc/resolv.conf` the name server is 127.0.0.1, as the C library does), or name servers given in its place
//! ([`NameResolution::NameServers`]: resolv.conf cannot name a port).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::system_conf;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Where a client's name resolver takes its configuration from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameResolution {
    /// The system's: `/etc/hosts`, then the name servers of `/etc/resolv.conf` (127.0.0.1 if it cannot be
    /// read) with its options.
    #[default]
    System,
    /// `/etc/hosts`, then these name servers (over UDP, and TCP for long answers) with the default options,
    /// instead of `/etc/resolv.conf`'s.
    NameServers(Vec<SocketAddr>),
}

/// A resolver for reqwest, built once per client and shared by its requests.
#[derive(Debug, Clone)]
pub(super) struct AsyncResolver(Arc<TokioResolver>);

impl AsyncResolver {
    pub(super) fn new(resolution: &NameResolution) -> Self {
        let (config, options) = match resolution {
            NameResolution::System => system_conf::read_system_conf().unwrap_or_else(|_| {
                name_servers(&[SocketAddr::from((IpAddr::V4(Ipv4Addr::LOCALHOST), 53))])
            }),
            NameResolution::NameServers(addresses) => name_servers(addresses),
        };
        let mut builder =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        *builder.options_mut() = options;
        Self(Arc::new(builder.build()))
    }
}

/// A configuration that asks `addresses`, each over UDP and TCP, with the default options.
fn name_servers(addresses: &[SocketAddr]) -> (ResolverConfig, ResolverOpts) {
    let mut servers = NameServerConfigGroup::new();
    for &address in addresses {
        servers.push(NameServerConfig::new(address, Protocol::Udp));
        servers.push(NameServerConfig::new(address, Protocol::Tcp));
    }
    (
        ResolverConfig::from_parts(None, Vec::new(), servers),
        ResolverOpts::default(),
    )
}

impl Resolve for AsyncResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = Arc::clone(&self.0);
        Box::pin(async move {
            let found = resolver.lookup_ip(name.as_str()).await?;
            // reqwest puts the URL's port in place of 0.
            let addresses: Addrs = Box::new(
                found
                    .into_iter()
                    .map(|address| SocketAddr::new(address, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A name server that receives every query and never answers (the resolver of a network that is down).
    fn swallowing_name_server() -> std::net::UdpSocket {
        std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket")
    }

    #[tokio::test]
    async fn a_lookup_is_dropped_with_its_request_and_holds_no_thread() {
        let server = swallowing_name_server();
        let address = server.local_addr().expect("its address");
        let resolver = AsyncResolver::new(&NameResolution::NameServers(vec![address]));
        let name: Name = "weather.tributary.dev".parse().expect("a name");
        let lookup = resolver.resolve(name);
        // Cut short as a deadline cuts a request: the future is dropped, nothing is left waiting.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), lookup)
                .await
                .is_err(),
            "a swallowing server cannot answer"
        );
        // The query did reach the configured server, not the machine's.
        let mut query = [0_u8; 512];
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a read timeout");
        let (length, _) = server.recv_from(&mut query).expect("a query arrived");
        assert!(
            length > 12,
            "a DNS query has a 12-byte header and a question"
        );
    }

    #[tokio::test]
    async fn localhost_resolves_without_a_name_server() {
        // No server listens on port 9 of loopback: localhost comes from /etc/hosts (or hickory's built-in).
        let resolver = AsyncResolver::new(&NameResolution::NameServers(vec![SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            9,
        ))]));
        let found: Vec<SocketAddr> = resolver
            .resolve("localhost".parse().expect("a name"))
            .await
            .expect("localhost")
            .collect();
        assert!(
            found.iter().any(|address| address.ip().is_loopback()),
            "{found:?}"
        );
    }
}
