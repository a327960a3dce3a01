//! The bounds on subscriptions one client connection, and all the connections from one
//! client address, may hold at once. The server puts a [`ConnectionSubscriptions`] into
//! every request of a connection (as an extension), and each front end (gRPC, HTTP) takes a
//! place from it for each subscription it starts, so that one client cannot take every one
//! of the server's subscription slots, over one connection or over many.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Subscriptions one connection may hold at once, unless configured otherwise.
pub const CONNECTION_SUBSCRIPTIONS_MAX_DEFAULT: usize = 128;

/// Subscriptions the connections from one client address may hold at once together,
/// unless configured otherwise.
pub const ADDRESS_SUBSCRIPTIONS_MAX_DEFAULT: usize = 1_000;

/// Places counted against one bound; clones share them.
#[derive(Clone, Debug)]
struct Places {
    open: Arc<AtomicUsize>,
    max: usize,
}

impl Places {
    fn take(&self) -> Option<Place> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()?;
        Some(Place {
            open: Arc::clone(&self.open),
        })
    }
}

/// One place among [`Places`], given back when dropped.
#[derive(Debug)]
struct Place {
    open: Arc<AtomicUsize>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Which bound refused a subscription; its `Display` is the refusal both front ends send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionRefused {
    /// The connection holds its limit.
    Connection { max: usize },
    /// The connections from the client's address hold their limit together.
    Address { max: usize },
}

impl SubscriptionRefused {
    /// The bound that refused.
    pub fn limit(&self) -> usize {
        match *self {
            Self::Connection { max } | Self::Address { max } => max,
        }
    }

    /// What the bound counts ("subscriptions per connection", "... per client address").
    pub fn limit_unit(&self) -> &'static str {
        match self {
            Self::Connection { .. } => "subscriptions per connection",
            Self::Address { .. } => "subscriptions per client address",
        }
    }
}

impl fmt::Display for SubscriptionRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connection { max } => write!(
                f,
                "this connection already holds its limit of {max} subscriptions; end one, open \
                 another connection, or raise the limit (strata serve \
                 --max-subscriptions-per-connection)"
            ),
            Self::Address { max } => write!(
                f,
                "the connections from this client address already hold their limit of {max} \
                 subscriptions together; end one, or raise the limit (strata serve \
                 --max-subscriptions-per-address)"
            ),
        }
    }
}

/// One connection's subscription places (and, when the server bounds them, its share of
/// its client address's); clones share them.
#[derive(Clone, Debug)]
pub struct ConnectionSubscriptions {
    connection: Places,
    address: Option<Places>,
}

/// One subscription's place on its connection (and its address), given back when dropped.
#[derive(Debug)]
pub struct ConnectionSubscription {
    _connection: Place,
    _address: Option<Place>,
}

impl ConnectionSubscriptions {
    /// Places for a connection holding at most `max` subscriptions, with no bound per address.
    pub fn new(max: usize) -> Self {
        Self {
            connection: Places {
                open: Arc::new(AtomicUsize::new(0)),
                max,
            },
            address: None,
        }
    }

    /// The bound of this connection.
    pub fn max(&self) -> usize {
        self.connection.max
    }

    /// Subscriptions open on this connection now.
    pub fn open(&self) -> usize {
        self.connection.open.load(Ordering::Acquire)
    }

    /// A place for one more subscription.
    ///
    /// # Errors
    /// The bound that is reached: the connection's, or its client address's.
    pub fn take(&self) -> Result<ConnectionSubscription, SubscriptionRefused> {
        let connection = self
            .connection
            .take()
            .ok_or(SubscriptionRefused::Connection {
                max: self.connection.max,
            })?;
        let address = self
            .address
            .as_ref()
            .map(|address| {
                address
                    .take()
                    .ok_or(SubscriptionRefused::Address { max: address.max })
            })
            .transpose()?;
        Ok(ConnectionSubscription {
            _connection: connection,
            _address: address,
        })
    }
}

/// The subscription places of every client address with a connection open; clones share
/// them. An address's count lives as long as one of its connections (or subscriptions).
#[derive(Clone, Debug)]
pub struct AddressSubscriptions {
    max: usize,
    addresses: Arc<Mutex<AddressTable>>,
}

#[derive(Debug, Default)]
struct AddressTable {
    counts: HashMap<IpAddr, Weak<AtomicUsize>>,
    /// Entries after which the table is swept of addresses with nothing open.
    sweep_at: usize,
}

/// The least number of entries before a sweep.
const SWEEP_ENTRIES_MIN: usize = 64;

impl AddressSubscriptions {
    /// Places for the connections of each client address, at most `max` subscriptions
    /// together.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            addresses: Arc::new(Mutex::new(AddressTable {
                counts: HashMap::new(),
                sweep_at: SWEEP_ENTRIES_MIN,
            })),
        }
    }

    /// The places of a new connection from `address`, which holds at most `connection_max`
    /// subscriptions itself.
    pub fn connection(&self, address: IpAddr, connection_max: usize) -> ConnectionSubscriptions {
        let address = address.to_canonical();
        let mut table = self
            .addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let open = match table.counts.get(&address).and_then(Weak::upgrade) {
            Some(open) => open,
            None => {
                let open = Arc::new(AtomicUsize::new(0));
                table.counts.insert(address, Arc::downgrade(&open));
                open
            }
        };
        if table.counts.len() >= table.sweep_at {
            table.counts.retain(|_, open| open.strong_count() > 0);
            table.sweep_at = (table.counts.len() * 2).max(SWEEP_ENTRIES_MIN);
        }
        drop(table);
        let mut places = ConnectionSubscriptions::new(connection_max);
        places.address = Some(Places {
            open,
            max: self.max,
        });
        places
    }

    /// Client addresses the table holds now (some may have nothing open until a sweep).
    pub fn addresses(&self) -> usize {
        self.addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counts
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::{AddressSubscriptions, ConnectionSubscriptions, SubscriptionRefused};

    #[test]
    fn places_run_out_at_the_limit_and_come_back_when_dropped() {
        let connection = ConnectionSubscriptions::new(2);
        let first = connection.take().expect("a first place");
        let second = connection.clone().take().expect("a second place, shared");
        assert_eq!(
            connection.take().unwrap_err(),
            SubscriptionRefused::Connection { max: 2 },
            "the third is over the limit"
        );
        assert_eq!(connection.open(), 2);
        drop(first);
        assert_eq!(connection.open(), 1);
        let _third = connection.take().expect("a place came back");
        drop(second);
        assert_eq!(connection.open(), 1);
    }

    #[test]
    fn a_limit_of_zero_refuses_every_subscription() {
        assert!(ConnectionSubscriptions::new(0).take().is_err());
    }

    #[test]
    fn the_connections_of_one_address_share_its_bound_and_other_addresses_do_not() {
        let addresses = AddressSubscriptions::new(3);
        let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let first = addresses.connection(client, 2);
        let second = addresses.connection(client, 2);
        let held = [first.take().unwrap(), first.take().unwrap()];
        assert_eq!(
            first.take().unwrap_err(),
            SubscriptionRefused::Connection { max: 2 }
        );
        let third = second.take().expect("the address has a third place");
        let refused = second.take().unwrap_err();
        assert_eq!(refused, SubscriptionRefused::Address { max: 3 });
        assert_eq!(refused.limit(), 3);
        assert!(refused.to_string().contains("limit of 3 subscriptions"));
        assert!(
            refused
                .to_string()
                .contains("--max-subscriptions-per-address")
        );
        // The refused take gave its connection place back.
        assert_eq!(second.open(), 1);
        // An IPv4-mapped IPv6 address is the same client.
        let mapped =
            addresses.connection(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()), 2);
        assert!(mapped.take().is_err());
        let other = addresses.connection(IpAddr::V6(Ipv6Addr::LOCALHOST), 2);
        let _other_place = other.take().expect("another address has its own places");
        drop(third);
        let _again = second
            .take()
            .expect("an ended subscription's place came back");
        drop(held);
    }

    #[test]
    fn addresses_with_nothing_open_are_swept() {
        let addresses = AddressSubscriptions::new(1);
        for last in 0..=255_u8 {
            let connection = addresses.connection(IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)), 1);
            let _place = connection.take().expect("a fresh address has a place");
        }
        assert!(
            addresses.addresses() <= super::SWEEP_ENTRIES_MIN,
            "{} addresses kept",
            addresses.addresses()
        );
        // A live address survives a sweep and keeps its count.
        let kept = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        let connection = addresses.connection(kept, 1);
        let _place = connection.take().unwrap();
        for last in 0..=255_u8 {
            drop(addresses.connection(IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)), 1));
        }
        assert!(addresses.connection(kept, 1).take().is_err());
    }
}
