//! Finding the other nodes of this site on the local network (mDNS / DNS-SD).
//!
//! `serve` advertises one service of type [`SERVICE_TYPE`] whose TXT record carries the
//! protocol version, this node's site id and its device id, and nothing else (no names,
//! no grids). It browses for the same type. A node seen on the network is judged by
//! [`judge`]: one of another site, one that advertises no or a malformed id, and this node
//! itself are ignored without being dialled. A node of this site becomes a
//! [`Candidate`]: its device id and the addresses it advertised.
//!
//! Discovery only proposes addresses. A candidate is dialled with
//! [`Endpoint::connect_to`](crate::net::Endpoint::connect_to), whose TLS verifier accepts
//! only the advertised device's key, and the sync session then checks that device's
//! membership certificate for this site. So whatever a node on the network advertises, it
//! can at most make this node try a handshake that fails.
//!
//! - [`judge`], [`properties`] and [`interfaces_for`] are the pure, tested core.
//! - [`Discovery`] wraps the mDNS daemon (`mdns-sd`): register, browse, shut down.
//! - [`Neighbours`] is what the daemon's loops share: the candidates found so far, and a
//!   counter that ticks when one is found or changes.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::watch;
use yizhan_protocol::{DeviceId, SiteId};

/// The DNS-SD service type yizhan nodes advertise.
pub const SERVICE_TYPE: &str = "_yizhan._udp.local.";

/// The TXT record's format version.
pub const TXT_VERSION: &str = "1";

/// TXT keys.
const KEY_VERSION: &str = "v";
const KEY_SITE: &str = "site";
const KEY_DEVICE: &str = "dev";

/// A node of this site seen on the network: who it says it is and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The device it advertised; the handshake must prove it.
    pub device: DeviceId,
    /// The addresses to dial, in a stable order.
    pub addrs: Vec<SocketAddr>,
}

/// Why a node seen on the network is not dialled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// It is this node.
    #[error("it is this node")]
    Own,
    /// It belongs to another site.
    #[error("it belongs to another site ({0})")]
    OtherSite(SiteId),
    /// It speaks another version of the advertisement.
    #[error("it advertises version {0:?}, not {TXT_VERSION}")]
    Version(String),
    /// A TXT key is missing.
    #[error("its advertisement has no {0:?}")]
    Missing(&'static str),
    /// A TXT value is not an id.
    #[error("its advertisement's {0:?} is not a valid id")]
    Malformed(&'static str),
    /// It advertised no address this node can dial.
    #[error("it advertises no address this node can dial")]
    NoAddress,
}

/// The TXT properties this node advertises: version, site id, device id.
pub fn properties(site: SiteId, device: DeviceId) -> Vec<(&'static str, String)> {
    vec![
        (KEY_VERSION, TXT_VERSION.to_string()),
        (KEY_SITE, site.to_string()),
        (KEY_DEVICE, device.to_string()),
    ]
}

/// The instance name this node advertises (a DNS label: at most 63 bytes, so a prefix of
/// the device id; the whole id is in the TXT record).
pub fn instance_name(device: DeviceId) -> String {
    format!("yizhan-{}", &device.to_string()[..16])
}

/// Judges a resolved advertisement: `txt` looks up a TXT key, `port` and `ips` are what it
/// advertised. `own_site` and `own_device` are this node's; `v4` says whether this node's
/// socket is IPv4 (only addresses of the socket's family can be dialled).
pub fn judge<'a>(
    own_site: SiteId,
    own_device: DeviceId,
    v4: bool,
    txt: impl Fn(&str) -> Option<&'a str>,
    port: u16,
    ips: impl IntoIterator<Item = IpAddr>,
) -> Result<Candidate, Ignored> {
    let version = txt(KEY_VERSION).ok_or(Ignored::Missing(KEY_VERSION))?;
    if version != TXT_VERSION {
        return Err(Ignored::Version(version.chars().take(16).collect()));
    }
    let site: SiteId = txt(KEY_SITE)
        .ok_or(Ignored::Missing(KEY_SITE))?
        .parse()
        .map_err(|_| Ignored::Malformed(KEY_SITE))?;
    let device: DeviceId = txt(KEY_DEVICE)
        .ok_or(Ignored::Missing(KEY_DEVICE))?
        .parse()
        .map_err(|_| Ignored::Malformed(KEY_DEVICE))?;
    if device == own_device {
        return Err(Ignored::Own);
    }
    if site != own_site {
        return Err(Ignored::OtherSite(site));
    }
    if port == 0 {
        return Err(Ignored::NoAddress);
    }
    let addrs: BTreeSet<SocketAddr> = ips
        .into_iter()
        .filter(|ip| ip.is_ipv4() == v4 && dialable(ip))
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    if addrs.is_empty() {
        return Err(Ignored::NoAddress);
    }
    Ok(Candidate {
        device,
        addrs: addrs.into_iter().collect(),
    })
}

fn dialable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        // A link-local IPv6 address needs a scope id the advertisement does not carry.
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast() || v6.is_unicast_link_local()),
    }
}

/// The interfaces to advertise and browse on for a node listening at `listen`: the one
/// that holds the listening address, or every interface of its family when it listens on
/// all of them. A node that listens on loopback only stays on loopback.
pub fn interfaces_for(listen: SocketAddr) -> Vec<IfKind> {
    match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => vec![IfKind::IPv4],
        ip if ip.is_unspecified() => vec![IfKind::IPv6],
        ip => vec![IfKind::Addr(ip)],
    }
}

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
#[error("local network discovery (mDNS) failed: {0}")]
pub struct DiscoveryError(String);

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        DiscoveryError(e.to_string())
    }
}

/// What one mDNS event means to this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// A node of this site: dial it.
    Found(Candidate),
    /// A node not to dial (not reported for this node itself).
    Ignored {
        /// The advertisement's instance name.
        instance: String,
        /// The device it claimed, as text, if any.
        device: Option<String>,
        /// Why.
        reason: Ignored,
    },
    /// An advertisement went away.
    Gone {
        /// The advertisement's instance name.
        instance: String,
    },
}

/// The running mDNS responder and browser of one `serve`.
pub struct Discovery {
    daemon: ServiceDaemon,
    events: mdns_sd::Receiver<ServiceEvent>,
    site: SiteId,
    device: DeviceId,
    v4: bool,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Advertises this node (listening at `listen`, the bound address with its real port)
    /// and browses for the others, on the interfaces [`interfaces_for`] names.
    pub fn start(
        listen: SocketAddr,
        site: SiteId,
        device: DeviceId,
    ) -> Result<Discovery, DiscoveryError> {
        let daemon = ServiceDaemon::new()?;
        let kinds = interfaces_for(listen);
        daemon.disable_interface(IfKind::All)?;
        daemon.enable_interface(kinds.clone())?;
        let name = instance_name(device);
        let host = format!("{name}.local.");
        let props = properties(site, device);
        let info = if listen.ip().is_unspecified() {
            // Every address of the enabled interfaces, kept up to date as they change.
            let mut info =
                ServiceInfo::new(SERVICE_TYPE, &name, &host, "", listen.port(), &props[..])?
                    .enable_addr_auto();
            info.set_interfaces(kinds);
            info
        } else {
            let mut info = ServiceInfo::new(
                SERVICE_TYPE,
                &name,
                &host,
                listen.ip(),
                listen.port(),
                &props[..],
            )?;
            info.set_interfaces(kinds);
            info
        };
        daemon.register(info)?;
        let events = daemon.browse(SERVICE_TYPE)?;
        Ok(Discovery {
            daemon,
            events,
            site,
            device,
            v4: listen.is_ipv4(),
        })
    }

    /// The next sighting; `None` once the browser has stopped.
    pub async fn next(&self) -> Option<Sighting> {
        loop {
            let event = self.events.recv_async().await.ok()?;
            if let Some(s) = self.sighting(event) {
                return Some(s);
            }
        }
    }

    fn sighting(&self, event: ServiceEvent) -> Option<Sighting> {
        match event {
            ServiceEvent::ServiceResolved(s) => {
                let txt = |k: &str| s.get_property_val_str(k);
                let ips = s.get_addresses().iter().map(|ip| ip.to_ip_addr());
                match judge(self.site, self.device, self.v4, txt, s.get_port(), ips) {
                    Ok(c) => Some(Sighting::Found(c)),
                    Err(Ignored::Own) => None,
                    Err(reason) => Some(Sighting::Ignored {
                        instance: s.get_fullname().to_string(),
                        device: s
                            .get_property_val_str(KEY_DEVICE)
                            .map(|d| d.chars().take(64).collect()),
                        reason,
                    }),
                }
            }
            ServiceEvent::ServiceRemoved(_, instance) => Some(Sighting::Gone { instance }),
            _ => None,
        }
    }

    /// Withdraws the advertisement and stops the responder (waits at most a second).
    pub fn shutdown(self) {
        let _ = self
            .daemon
            .unregister(&format!("{}.{SERVICE_TYPE}", instance_name(self.device)));
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(std::time::Duration::from_secs(1));
        }
    }
}

/// The candidates found so far, shared by `serve`'s loops.
#[derive(Debug)]
pub struct Neighbours {
    found: Mutex<HashMap<DeviceId, (String, Vec<SocketAddr>)>>,
    tick: watch::Sender<u64>,
}

impl Default for Neighbours {
    fn default() -> Self {
        Neighbours {
            found: Mutex::new(HashMap::new()),
            tick: watch::channel(0).0,
        }
    }
}

impl Neighbours {
    /// Records `candidate` (advertised as `instance`); true if it is new or its
    /// addresses changed, and then the counter ticks.
    pub fn insert(&self, instance: &str, candidate: Candidate) -> bool {
        let mut found = self.found.lock().expect("neighbours lock");
        let entry = (instance.to_string(), candidate.addrs);
        if found.get(&candidate.device) == Some(&entry) {
            return false;
        }
        found.insert(candidate.device, entry);
        drop(found);
        self.tick.send_modify(|n| *n += 1);
        true
    }

    /// Forgets the node advertised as `instance`.
    pub fn remove_instance(&self, instance: &str) {
        self.found
            .lock()
            .expect("neighbours lock")
            .retain(|_, (i, _)| i != instance);
    }

    /// The addresses found for `device`.
    pub fn addrs_of(&self, device: DeviceId) -> Option<Vec<SocketAddr>> {
        let found = self.found.lock().expect("neighbours lock");
        found.get(&device).map(|(_, a)| a.clone())
    }

    /// Every candidate found, in a stable order.
    pub fn all(&self) -> Vec<Candidate> {
        let found = self.found.lock().expect("neighbours lock");
        let mut all: Vec<Candidate> = found
            .iter()
            .map(|(d, (_, a))| Candidate {
                device: *d,
                addrs: a.clone(),
            })
            .collect();
        all.sort_by_key(|c| *c.device.as_bytes());
        all
    }

    /// A receiver whose value changes whenever a candidate is found or changes.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }
}

/// Waits until a new candidate is found or `at_most` has passed.
pub async fn wait_for_news(neighbours: Option<&Neighbours>, at_most: Duration) {
    match neighbours {
        Some(n) => {
            let mut rx = n.watch();
            rx.mark_unchanged();
            let _ = tokio::time::timeout(at_most, rx.changed()).await;
        }
        None => tokio::time::sleep(at_most).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use yizhan_protocol::DeviceKey;

    fn device(seed: u8) -> DeviceId {
        DeviceKey::from_seed([seed; 32]).device_id()
    }

    fn site(seed: u8) -> SiteId {
        SiteId::for_root(device(seed))
    }

    fn txt(pairs: &[(&str, String)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn run(
        own_site: SiteId,
        own: DeviceId,
        t: &HashMap<String, String>,
        port: u16,
        ips: &[&str],
    ) -> Result<Candidate, Ignored> {
        let ips: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
        judge(
            own_site,
            own,
            true,
            |k| t.get(k).map(String::as_str),
            port,
            ips,
        )
    }

    #[test]
    fn a_node_of_this_site_is_a_candidate_at_its_addresses() {
        let (s, me, other) = (site(1), device(2), device(3));
        let t = txt(&properties(s, other));
        let c = run(s, me, &t, 7365, &["10.0.0.9", "127.0.0.1", "10.0.0.9"]).unwrap();
        assert_eq!(c.device, other);
        assert_eq!(
            c.addrs,
            vec![
                "10.0.0.9:7365".parse().unwrap(),
                "127.0.0.1:7365".parse().unwrap()
            ]
        );
    }

    #[test]
    fn another_site_is_ignored() {
        let me = device(2);
        let t = txt(&properties(site(9), device(3)));
        assert_eq!(
            run(site(1), me, &t, 7365, &["10.0.0.9"]),
            Err(Ignored::OtherSite(site(9)))
        );
    }

    #[test]
    fn this_node_is_ignored() {
        let (s, me) = (site(1), device(2));
        let t = txt(&properties(s, me));
        assert_eq!(run(s, me, &t, 7365, &["10.0.0.9"]), Err(Ignored::Own));
    }

    #[test]
    fn missing_or_malformed_ids_and_other_versions_are_ignored() {
        let (s, me, other) = (site(1), device(2), device(3));
        let good = properties(s, other);
        for key in [KEY_VERSION, KEY_SITE, KEY_DEVICE] {
            let t = txt(&good
                .iter()
                .filter(|(k, _)| *k != key)
                .cloned()
                .collect::<Vec<_>>());
            assert_eq!(
                run(s, me, &t, 7365, &["10.0.0.9"]),
                Err(Ignored::Missing(key))
            );
        }
        let mut t = txt(&good);
        t.insert(KEY_VERSION.into(), "2".into());
        assert_eq!(
            run(s, me, &t, 7365, &["10.0.0.9"]),
            Err(Ignored::Version("2".into()))
        );
        for (key, bad) in [
            (KEY_SITE, "zz"),
            (KEY_DEVICE, "00"),
            (KEY_DEVICE, &"0".repeat(64)),
            (KEY_SITE, &"0".repeat(31)),
        ] {
            let mut t = txt(&good);
            t.insert(key.into(), bad.to_string());
            assert_eq!(
                run(s, me, &t, 7365, &["10.0.0.9"]),
                Err(Ignored::Malformed(key)),
                "{key}={bad}"
            );
        }
    }

    #[test]
    fn no_dialable_address_is_ignored() {
        let (s, me, other) = (site(1), device(2), device(3));
        let t = txt(&properties(s, other));
        assert_eq!(run(s, me, &t, 0, &["10.0.0.9"]), Err(Ignored::NoAddress));
        assert_eq!(run(s, me, &t, 7365, &[]), Err(Ignored::NoAddress));
        // An IPv4 socket cannot dial IPv6; unspecified and multicast are never dialled.
        assert_eq!(
            run(
                s,
                me,
                &t,
                7365,
                &["::1", "0.0.0.0", "224.0.0.251", "fe80::1"]
            ),
            Err(Ignored::NoAddress)
        );
        let c = judge(
            s,
            me,
            false,
            |k| t.get(k).map(String::as_str),
            7365,
            ["fe80::1".parse().unwrap(), "fd00::7".parse().unwrap()],
        )
        .unwrap();
        assert_eq!(c.addrs, vec!["[fd00::7]:7365".parse().unwrap()]);
    }

    #[test]
    fn the_advertisement_carries_ids_only() {
        let props = properties(site(1), device(2));
        let keys: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![KEY_VERSION, KEY_SITE, KEY_DEVICE]);
        // Every property fits a TXT string, and the instance name a DNS label.
        assert!(props.iter().all(|(k, v)| k.len() + v.len() < 255));
        assert!(instance_name(device(2)).len() <= 63);
    }

    #[test]
    fn interfaces_follow_the_listening_address() {
        let kinds = |a: &str| format!("{:?}", interfaces_for(a.parse().unwrap()));
        assert_eq!(kinds("0.0.0.0:7365"), format!("{:?}", vec![IfKind::IPv4]));
        assert_eq!(kinds("[::]:7365"), format!("{:?}", vec![IfKind::IPv6]));
        assert_eq!(
            kinds("127.0.0.1:0"),
            format!("{:?}", vec![IfKind::Addr("127.0.0.1".parse().unwrap())])
        );
    }

    #[test]
    fn neighbours_tick_on_new_or_moved_candidates_only() {
        let n = Neighbours::default();
        let rx = n.watch();
        let c = Candidate {
            device: device(3),
            addrs: vec!["10.0.0.9:7365".parse().unwrap()],
        };
        assert!(n.insert("a", c.clone()));
        assert!(!n.insert("a", c.clone()));
        assert_eq!(*rx.borrow(), 1);
        let moved = Candidate {
            addrs: vec!["10.0.0.10:7365".parse().unwrap()],
            ..c.clone()
        };
        assert!(n.insert("a", moved.clone()));
        assert_eq!(n.addrs_of(device(3)), Some(moved.addrs.clone()));
        assert_eq!(n.all(), vec![moved]);
        n.remove_instance("a");
        assert_eq!(n.addrs_of(device(3)), None);
    }
}
