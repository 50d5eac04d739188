//! Finding the miners on the box's own network: when the user asks (the page's Scan
//! button), every address of the box's IPv4 subnets is asked for AxeOS's
//! /api/system/info, a few at a time, each with a short timeout.
//!
//! The box only ever scans the network it is on: the ranges come from its own interfaces,
//! at most 256 addresses per interface (a subnet larger than a /24 is scanned as the /24
//! around the box's own address), and a range the user names must lie inside one of those
//! subnets. Scanning asks; it changes nothing on any device.
//!
//! Alongside the scan the box listens for [`MDNS_BROWSE`] seconds to the miners that
//! announce themselves over mDNS (ESP-Miner announces `_http._tcp` with the subtype
//! `_axeos`): one on the box's subnet but outside the /24 the scan covers is asked too.

use crate::axeos::{AxeosError, Client, MinerInfo};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// The most addresses one scan asks per interface, and per range the user names.
pub const MAX_HOSTS: u32 = 256;
/// Hosts asked at once: a /24 of silent addresses takes a few connect timeouts, not 254.
pub const CONCURRENCY: usize = 32;

/// One IPv4 subnet the box is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalNet {
    pub interface: String,
    /// The box's own address on it.
    pub address: Ipv4Addr,
    pub prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl LocalNet {
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & mask(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network())
    }

    /// The subnet's own network and broadcast addresses (no host answers on them).
    fn is_edge(&self, ip: Ipv4Addr) -> bool {
        if self.prefix >= 31 {
            return false;
        }
        let host = u32::from(ip) & !mask(self.prefix);
        host == 0 || host == !mask(self.prefix)
    }
}

impl std::fmt::Display for LocalNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} on {}", self.network(), self.prefix, self.interface)
    }
}

/// The box's IPv4 subnets: interfaces that are up, not loopback, not link-local
/// (169.254/16 is where a device with no DHCP lease lands, not a network to scan).
pub fn local_nets() -> Vec<LocalNet> {
    use nix::net::if_::InterfaceFlags;
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut nets: Vec<LocalNet> = addrs
        .filter(|a| a.flags.contains(InterfaceFlags::IFF_UP) && !a.flags.contains(InterfaceFlags::IFF_LOOPBACK))
        .filter_map(|a| {
            let address = a.address.as_ref()?.as_sockaddr_in()?.ip();
            let netmask = a.netmask.as_ref()?.as_sockaddr_in()?.ip();
            let prefix = u32::from(netmask).leading_ones() as u8;
            let usable = !address.is_loopback() && !address.is_link_local() && !address.is_unspecified();
            usable.then_some(LocalNet { interface: a.interface_name, address, prefix })
        })
        .collect();
    nets.sort_by_key(|n| (n.interface.clone(), n.address));
    nets
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("{0:?} is not a range; write an address with its prefix length, e.g. 192.168.1.0/24")]
    BadRange(String),
    #[error("{range} is not on this box's own network ({nets}); the box only scans the network it is on")]
    OutsideLan { range: String, nets: String },
    #[error("{range} has {hosts} addresses; scan at most 256 at a time (a /24 or smaller)")]
    TooLarge { range: String, hosts: u64 },
    #[error("this box has no IPv4 network to scan: no network interface with an IPv4 address is up")]
    NoNetwork,
    #[error("a scan is running already ({asked} of {addresses} addresses asked); wait for it to end, then scan again")]
    Busy { asked: usize, addresses: usize },
    #[error("{ip} is not on this box's own network ({nets}); the box only changes miners on the network it is on")]
    MinerOutsideLan { ip: Ipv4Addr, nets: String },
}

/// An address to ask, and the box's own address on the way to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub ip: Ipv4Addr,
    pub via: Ipv4Addr,
}

fn describe(nets: &[LocalNet]) -> String {
    if nets.is_empty() {
        "none".to_string()
    } else {
        nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// The box's subnet that holds `ip` (never the box's own address).
pub fn net_of(nets: &[LocalNet], ip: Ipv4Addr) -> Result<&LocalNet, ScanError> {
    nets.iter()
        .find(|n| n.contains(ip) && !n.is_edge(ip) && !nets.iter().any(|m| m.address == ip))
        .ok_or_else(|| ScanError::MinerOutsideLan { ip, nets: describe(nets) })
}

/// The addresses one scan asks: the box's own subnets (each capped to the /24 around the
/// box's address), or `range` if given, which must lie inside one of them. Never the
/// box's own addresses, nor a subnet's network and broadcast addresses.
pub fn plan(nets: &[LocalNet], range: Option<&str>) -> Result<Vec<Target>, ScanError> {
    if nets.is_empty() {
        return Err(ScanError::NoNetwork);
    }
    let own = |ip: Ipv4Addr| nets.iter().any(|n| n.address == ip);
    let mut out = Vec::new();
    let mut push = |net: &LocalNet, first: u32, count: u64| {
        for i in 0..count {
            let ip = Ipv4Addr::from(first + i as u32);
            if !own(ip) && !net.is_edge(ip) && !out.iter().any(|t: &Target| t.ip == ip) {
                out.push(Target { ip, via: net.address });
            }
        }
    };
    match range.map(str::trim).filter(|r| !r.is_empty()) {
        None => {
            for net in nets {
                let prefix = net.prefix.max(24);
                let first = u32::from(net.address) & mask(prefix);
                push(net, first, 1u64 << (32 - u32::from(prefix)));
            }
        }
        Some(r) => {
            let (ip, prefix) = parse_range(r)?;
            let hosts = 1u64 << (32 - u32::from(prefix));
            let first = u32::from(ip) & mask(prefix);
            let canonical = format!("{}/{prefix}", Ipv4Addr::from(first));
            // Inside a subnet of the box: the range is no wider than it and starts in it.
            let Some(net) = nets.iter().find(|n| prefix >= n.prefix && n.contains(Ipv4Addr::from(first))) else {
                return Err(ScanError::OutsideLan { range: canonical, nets: describe(nets) });
            };
            if hosts > u64::from(MAX_HOSTS) {
                return Err(ScanError::TooLarge { range: canonical, hosts });
            }
            push(net, first, hosts);
        }
    }
    Ok(out)
}

fn parse_range(r: &str) -> Result<(Ipv4Addr, u8), ScanError> {
    let bad = || ScanError::BadRange(r.chars().take(64).collect());
    let (ip, prefix) = match r.split_once('/') {
        Some((ip, p)) => (ip, p.parse::<u8>().map_err(|_| bad())?),
        None => (r, 32),
    };
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    if prefix > 32 {
        return Err(bad());
    }
    Ok((ip, prefix))
}

/// The DNS-SD type ESP-Miner announces its web server under.
pub const AXEOS_SERVICE: &str = "_axeos._sub._http._tcp.local.";
/// How long a scan listens for mDNS announcements (and answers to its own query).
pub const MDNS_BROWSE: std::time::Duration = std::time::Duration::from_secs(3);

/// The IPv4 addresses that announce an AxeOS web server over mDNS within `window`; none
/// (with a warning) if mDNS cannot run here. Blocking: run it off the async threads.
pub fn mdns_browse(window: std::time::Duration) -> Vec<Ipv4Addr> {
    let daemon = match mdns_sd::ServiceDaemon::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "mDNS unavailable; the scan asks the subnet only");
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    if let Ok(events) = daemon.browse(AXEOS_SERVICE) {
        let until = std::time::Instant::now() + window;
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
            match events.recv_timeout(left) {
                Ok(mdns_sd::ServiceEvent::ServiceResolved(s)) if s.port == 80 => {
                    for ip in s.addresses.iter().map(|a| a.to_ip_addr()) {
                        if let std::net::IpAddr::V4(v4) = ip {
                            if !found.contains(&v4) {
                                found.push(v4);
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let _ = daemon.shutdown();
    found.sort();
    found
}

/// One address that answered like a miner: what it is, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Found {
    pub ip: Ipv4Addr,
    /// The box's address on the miner's network (where "Mine on this box" points it).
    pub via: Ipv4Addr,
    pub miner: Option<MinerInfo>,
    pub error: Option<String>,
}

/// What a scan asked and found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Unix seconds when the scan ended.
    pub finished_at: i64,
    /// The subnets asked ("192.168.1.0/24 on eth0").
    pub networks: Vec<String>,
    pub addresses_asked: usize,
    /// Miners first (by address), then addresses that answered but could not be read.
    pub found: Vec<Found>,
    /// Addresses on the box's subnets that announced an AxeOS web server over mDNS (asked
    /// too, also where they lie outside the /24 the scan covers).
    pub mdns_announced: Vec<Ipv4Addr>,
}

/// Asks every target for /api/system/info, [`CONCURRENCY`] at a time, counting each
/// address done in `asked`. Addresses where nothing listens or a web server that is not
/// AxeOS answers are left out; one that answers garbage or too slowly is listed with the
/// reason, and the scan goes on.
pub async fn scan(client: &Client, targets: &[Target], asked: &AtomicUsize) -> Vec<Found> {
    let mut found: Vec<Found> = futures::stream::iter(targets.iter().copied())
        .map(|t| async move {
            let answer = client.info(t.ip).await;
            asked.fetch_add(1, Ordering::Relaxed);
            match answer {
                Ok(m) => Some(Found { ip: t.ip, via: t.via, miner: Some(m), error: None }),
                Err(AxeosError::Unreachable { .. } | AxeosError::NotAxeos { .. }) => None,
                Err(e) => Some(Found { ip: t.ip, via: t.via, miner: None, error: Some(e.to_string()) }),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    found.sort_by_key(|f| (f.miner.is_none(), f.ip));
    found
}

/// Where a scan the page started is: the page polls it while it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Counts up from 1 each time the service starts (a scan's id for the page).
    pub id: u64,
    pub state: ScanState,
    /// Unix seconds.
    pub started_at: i64,
    /// The range the user named, if any.
    pub range: Option<String>,
    /// Addresses this scan asks (grows by the mDNS-announced ones once it has listened).
    pub addresses: usize,
    /// Addresses asked so far.
    pub asked: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanState {
    Running,
    Done,
}

/// A scan accepted by [`Lan::start`], to be run by [`Lan::run`] in the background.
pub struct Job {
    nets: Vec<LocalNet>,
    targets: Vec<Target>,
    /// The whole subnet (no range named): mDNS is listened to as well.
    whole: bool,
}

/// The last scan's report file in the status service's data directory.
pub const REPORT_FILE: &str = "lan-scan.json";
/// A report file larger than this is not a report this service wrote (256 entries of a
/// few hundred bytes).
const MAX_REPORT_FILE: u64 = 1 << 20;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The scan the page started last, and the one running now: one at a time, run in the
/// background, its report kept in memory and (with a file) written once when it ends, so
/// the page still shows it after the service restarts. Written once per scan, never per
/// host: the box's data partition is an SD card.
pub struct Lan {
    pub client: Client,
    /// How long a scan listens for mDNS announcements; zero: not at all.
    pub mdns_window: std::time::Duration,
    file: Option<PathBuf>,
    last: std::sync::Mutex<Option<Report>>,
    progress: std::sync::Mutex<Option<Progress>>,
    asked: AtomicUsize,
    running: AtomicBool,
    ids: AtomicU64,
}

impl Default for Lan {
    fn default() -> Lan {
        Lan::new(Client::default())
    }
}

/// Clears `running` when the background scan ends, also if it panics.
struct RunningGuard<'a>(&'a AtomicBool);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Lan {
    /// A scanner whose reports live in memory only.
    pub fn new(client: Client) -> Lan {
        Lan {
            client,
            mdns_window: MDNS_BROWSE,
            file: None,
            last: Default::default(),
            progress: Default::default(),
            asked: AtomicUsize::new(0),
            running: AtomicBool::new(false),
            ids: AtomicU64::new(0),
        }
    }

    /// A scanner that keeps its last report in `file`, starting from the report there.
    pub fn persisted(client: Client, file: PathBuf) -> Lan {
        let last = read_report(&file);
        Lan { file: Some(file), last: std::sync::Mutex::new(last), ..Lan::new(client) }
    }

    pub fn last(&self) -> Option<Report> {
        self.last.lock().expect("scan report").clone()
    }

    /// The scan running now, or the last one this run of the service started.
    pub fn progress(&self) -> Option<Progress> {
        let mut p = self.progress.lock().expect("scan progress").clone()?;
        if p.state == ScanState::Running {
            p.asked = self.asked.load(Ordering::Relaxed);
        }
        Some(p)
    }

    /// Accepts a scan of the box's own subnets, or of `range` inside them, if none is
    /// running; a range off the box's network is refused here, before anything is sent.
    pub fn start(&self, range: Option<&str>) -> Result<Job, ScanError> {
        if self.running.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            let p = self.progress();
            let (asked, addresses) = p.map_or((0, 0), |p| (p.asked, p.addresses));
            return Err(ScanError::Busy { asked, addresses });
        }
        let range = range.map(str::trim).filter(|r| !r.is_empty());
        let nets = local_nets();
        let targets = match plan(&nets, range) {
            Ok(t) => t,
            Err(e) => {
                self.running.store(false, Ordering::SeqCst);
                return Err(e);
            }
        };
        self.asked.store(0, Ordering::Relaxed);
        *self.progress.lock().expect("scan progress") = Some(Progress {
            id: self.ids.fetch_add(1, Ordering::Relaxed) + 1,
            state: ScanState::Running,
            started_at: now(),
            range: range.map(str::to_string),
            addresses: targets.len(),
            asked: 0,
        });
        Ok(Job { nets, targets, whole: range.is_none() })
    }

    /// Runs a scan [`Lan::start`] accepted (the page polls [`Lan::progress`] meanwhile).
    pub async fn run(&self, job: Job) -> Report {
        let _running = RunningGuard(&self.running);
        let Job { nets, mut targets, whole } = job;
        // Only for the whole-subnet scan: a range the user names is all that is asked.
        let mut mdns_announced = Vec::new();
        if whole {
            let window = self.mdns_window;
            let heard = tokio::task::spawn_blocking(move || mdns_browse(window)).await.unwrap_or_default();
            // A flood of announcements asks no more than a subnet's worth.
            for ip in heard.into_iter().take(MAX_HOSTS as usize) {
                if let Ok(net) = net_of(&nets, ip) {
                    mdns_announced.push(ip);
                    if !targets.iter().any(|t| t.ip == ip) {
                        targets.push(Target { ip, via: net.address });
                    }
                }
            }
            if let Some(p) = self.progress.lock().expect("scan progress").as_mut() {
                p.addresses = targets.len();
            }
        }
        let networks = nets.iter().filter(|n| targets.iter().any(|t| t.via == n.address)).map(|n| n.to_string());
        let networks = networks.collect();
        tracing::info!(addresses = targets.len(), "scanning the LAN for AxeOS miners (asked from the status page)");
        let found = scan(&self.client, &targets, &self.asked).await;
        let report = Report { finished_at: now(), networks, addresses_asked: targets.len(), found, mdns_announced };
        if let Some(file) = &self.file {
            // Once per scan; a failure costs only the report after a restart.
            if let Err(e) = write_report(file, &report) {
                tracing::warn!(file = %file.display(), error = %e, "the scan's report was not saved; it is shown until the service restarts");
            }
        }
        *self.last.lock().expect("scan report") = Some(report.clone());
        if let Some(p) = self.progress.lock().expect("scan progress").as_mut() {
            p.state = ScanState::Done;
            p.asked = self.asked.load(Ordering::Relaxed);
        }
        report
    }
}

/// The report in `file`; none if there is none, or (with a warning) if it is not one.
fn read_report(file: &Path) -> Option<Report> {
    use std::io::Read;
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "the last LAN scan's report cannot be read; scan again");
            return None;
        }
    };
    let mut text = Vec::new();
    if let Err(e) = f.take(MAX_REPORT_FILE + 1).read_to_end(&mut text) {
        tracing::warn!(file = %file.display(), error = %e, "the last LAN scan's report cannot be read; scan again");
        return None;
    }
    if text.len() as u64 > MAX_REPORT_FILE {
        tracing::warn!(file = %file.display(), "the last LAN scan's report is too large to be one; scan again");
        return None;
    }
    serde_json::from_slice(&text)
        .map_err(|e| tracing::warn!(file = %file.display(), error = %e, "the last LAN scan's report is not readable; scan again"))
        .ok()
}

fn write_report(file: &Path, report: &Report) -> std::io::Result<()> {
    let text = serde_json::to_vec(report).map_err(std::io::Error::other)?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    minebox_platform::fs::AtomicWrite::to(file).mode(0o640).write(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(address: [u8; 4], prefix: u8) -> LocalNet {
        LocalNet { interface: "eth0".into(), address: Ipv4Addr::from(address), prefix }
    }

    #[test]
    fn the_own_subnet_without_the_box_network_and_broadcast() {
        let t = plan(&[net([192, 168, 1, 20], 24)], None).unwrap();
        assert_eq!(t.len(), 253);
        assert_eq!(t[0], Target { ip: Ipv4Addr::new(192, 168, 1, 1), via: Ipv4Addr::new(192, 168, 1, 20) });
        assert!(!t.iter().any(|t| t.ip == Ipv4Addr::new(192, 168, 1, 20) || t.ip.octets()[3] == 255));
    }

    #[test]
    fn a_wide_subnet_is_scanned_as_the_24_around_the_box() {
        let t = plan(&[net([10, 1, 2, 3], 16)], None).unwrap();
        assert_eq!(t.len(), 255, "10.1.2.0 is a host address in a /16; the box's own is left out");
        assert!(t.iter().all(|t| t.ip.octets()[..3] == [10, 1, 2]));
    }

    #[test]
    fn a_range_outside_the_own_subnets_is_refused() {
        let nets = [net([192, 168, 1, 20], 24)];
        let e = plan(&nets, Some("8.8.8.0/24")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "8.8.8.0/24 is not on this box's own network (192.168.1.0/24 on eth0); the box only scans the network it is on"
        );
        assert!(
            matches!(plan(&nets, Some("192.168.0.0/16")), Err(ScanError::OutsideLan { .. })),
            "wider than the subnet"
        );
        assert!(matches!(plan(&nets, Some("192.168.1.0/33")), Err(ScanError::BadRange(_))));
        assert!(matches!(plan(&nets, Some("my lan")), Err(ScanError::BadRange(_))));
        assert_eq!(plan(&nets, Some("192.168.1.64/30")).unwrap().len(), 4);
        let wide = [net([10, 0, 0, 1], 16)];
        assert!(matches!(plan(&wide, Some("10.0.0.0/20")), Err(ScanError::TooLarge { hosts: 4096, .. })));
        assert!(matches!(plan(&[], None), Err(ScanError::NoNetwork)));
    }

    #[test]
    fn the_report_file_round_trips_and_anything_else_is_no_report() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("sub").join(REPORT_FILE);
        assert_eq!(read_report(&file), None, "no file yet");
        let ip = Ipv4Addr::new(192, 168, 1, 7);
        let report = Report {
            finished_at: 1_700_000_000,
            networks: vec!["192.168.1.0/24 on eth0".into()],
            addresses_asked: 253,
            found: vec![Found { ip, via: ip, miner: None, error: Some("answered too slowly".into()) }],
            mdns_announced: vec![ip],
        };
        write_report(&file, &report).unwrap();
        assert_eq!(Lan::persisted(Client::default(), file.clone()).last(), Some(report));
        std::fs::write(&file, "{\"finished_at\": \"yesterday\"}").unwrap();
        assert_eq!(Lan::persisted(Client::default(), file.clone()).last(), None);
        std::fs::write(&file, vec![b' '; (MAX_REPORT_FILE + 1) as usize]).unwrap();
        assert_eq!(read_report(&file), None);
    }

    #[test]
    fn a_miner_address_must_be_on_the_own_subnet() {
        let nets = [net([192, 168, 1, 20], 24)];
        assert!(net_of(&nets, Ipv4Addr::new(192, 168, 1, 7)).is_ok());
        for ip in [[192, 168, 2, 7], [192, 168, 1, 20], [192, 168, 1, 255], [1, 1, 1, 1]] {
            assert!(matches!(net_of(&nets, Ipv4Addr::from(ip)), Err(ScanError::MinerOutsideLan { .. })), "{ip:?}");
        }
    }
}
