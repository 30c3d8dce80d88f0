//! Who a client is, for the limits that count per client: an IPv4 address or
//! an IPv6 /64.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The address per-client limits (connections, pending handshakes, the
/// lock-out) count against. An IPv6 host usually holds a whole /64, so a
/// per-address limit would not bind it; IPv4-mapped addresses (a dual-stack
/// listener) are the IPv4 client they stand for.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A bounded number of places, in total and per client (pending WebSocket
/// handshakes): one client can never hold the places everyone else needs.
pub struct ClientPlaces {
    max: usize,
    per_client: usize,
    taken: Mutex<Taken>,
}

#[derive(Default)]
struct Taken {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Why no place was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPlace {
    /// Every place is taken.
    Full,
    /// This client holds its share.
    ClientFull,
}

impl ClientPlaces {
    /// `max` places, at most `per_client` of them for one client.
    pub fn new(max: usize, per_client: usize) -> Arc<Self> {
        Arc::new(Self { max, per_client, taken: Mutex::default() })
    }

    /// A place for `ip`'s client, held until the [`ClientPlace`] is dropped.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Result<ClientPlace, NoPlace> {
        let client = client_key(ip);
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if taken.total >= self.max {
            return Err(NoPlace::Full);
        }
        let mine = taken.by_client.entry(client).or_default();
        if *mine >= self.per_client {
            return Err(NoPlace::ClientFull);
        }
        *mine += 1;
        taken.total += 1;
        Ok(ClientPlace { places: self.clone(), client })
    }
}

/// One taken place of [`ClientPlaces`]; given back on drop.
pub struct ClientPlace {
    places: Arc<ClientPlaces>,
    client: IpAddr,
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let mut taken = self.places.taken.lock().unwrap_or_else(|p| p.into_inner());
        taken.total -= 1;
        if let Some(n) = taken.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                taken.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_in_total_and_per_client_and_come_back_on_drop() {
        let places = ClientPlaces::new(3, 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let first = places.take(ip("2001:db8::1")).unwrap();
        let _second = places.take(ip("2001:db8::2")).unwrap();
        assert_eq!(places.take(ip("2001:db8::3")).err(), Some(NoPlace::ClientFull), "one /64 is one client");
        let _third = places.take(ip("192.0.2.1")).unwrap();
        assert_eq!(places.take(ip("192.0.2.2")).err(), Some(NoPlace::Full));
        drop(first);
        let again = places.take(ip("2001:db8::3"));
        assert!(again.is_ok());
        assert_eq!(places.taken.lock().unwrap().by_client.len(), 2);
        drop((again, _second));
        assert_eq!(places.taken.lock().unwrap().by_client.len(), 1, "a client holding nothing is forgotten");
    }

    #[test]
    fn clients_are_counted_by_ipv4_address_and_ipv6_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("2001:db8:1:2:bbbb::2")), client_key(ip("2001:db8:1:2:aaaa::1")));
        assert_ne!(client_key(ip("2001:db8:1:3::1")), client_key(ip("2001:db8:1:2::1")));
    }
}
