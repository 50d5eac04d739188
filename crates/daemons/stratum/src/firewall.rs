//! The firewall follows the settings: the stratum ports of the enabled coins, and no
//! others, are open to the LAN.
//!
//! /etc/nftables.conf declares an empty set `inet minebox stratum_tcp` that its input chain
//! accepts from private addresses. `minebox-stratum firewall` (run as root by the stratum
//! unit's `ExecStartPre=+`) replaces the set's elements with the ports the server is about
//! to listen on, computed from the same settings the server reads; `firewall --close`
//! (`ExecStopPost=+`) empties it. The status page restarts the stratum unit after every
//! settings change, so a new `stratum_port` or a coin turned on or off reaches the rules.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The nftables set holding the open stratum ports (declared in /etc/nftables.conf).
pub const SET: &str = "inet minebox stratum_tcp";

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot run {nft}: {source}; install nftables (the image has it at /usr/sbin/nft)")]
    Spawn { nft: String, source: std::io::Error },
    #[error(
        "nft refused to update the stratum ports ({status}): {stderr}; is the MineBox ruleset loaded \
         (systemctl status nftables; it must define the set {SET})?"
    )]
    Refused { status: std::process::ExitStatus, stderr: String },
}

/// The stratum ports of the enabled coins (solo, and pool mode's PPLNS port where it is on),
/// sorted, each once: what the server listens on.
pub fn stratum_ports(settings: &minebox_settings::Settings, registry: &minebox_coin::Registry) -> Vec<u16> {
    let mut ports: Vec<u16> = settings
        .enabled_coins(registry)
        .flat_map(|(c, _, _)| std::iter::once(c.stratum_port).chain(c.pool.as_ref().map(|p| p.port)))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// One nft transaction: the set's old elements go and the new ones come in together, so
/// no moment has both the old and the new ports open, and a refused element changes nothing.
pub fn script(ports: &[u16]) -> String {
    let mut s = format!("flush set {SET}\n");
    if !ports.is_empty() {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        s += &format!("add element {SET} {{ {} }}\n", list.join(", "));
    }
    s
}

/// Runs `script` through `nft -f -`.
pub fn apply(nft: &Path, script: &str) -> Result<(), FirewallError> {
    let spawn_err = |source| FirewallError::Spawn { nft: nft.display().to_string(), source };
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    // A script of a few hundred bytes fits the pipe; nft reads all of it before answering.
    child.stdin.take().expect("piped stdin").write_all(script.as_bytes()).map_err(spawn_err)?;
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Bounded: nft echoes the script with its error; a line or two says what is wrong.
        let stderr: String = stderr.trim().chars().take(500).collect();
        return Err(FirewallError::Refused { status: out.status, stderr });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_transaction_replaces_the_ports_and_no_ports_only_flushes() {
        assert_eq!(
            script(&[3333, 3334]),
            "flush set inet minebox stratum_tcp\nadd element inet minebox stratum_tcp { 3333, 3334 }\n"
        );
        assert_eq!(script(&[]), "flush set inet minebox stratum_tcp\n");
    }

    #[test]
    fn the_ports_are_those_of_the_enabled_coins_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("minebox.toml");
        std::fs::write(
            &path,
            "[coins.btc]\nenabled = true\nnetwork = \"regtest\"\n\
             payout_address = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\nstratum_port = 4444\n\
             [coins.btc.pool]\nport = 4445\n\
             [coins.bch]\nenabled = false\nstratum_port = 4555\n[coins.bch.pool]\nport = 4556\n",
        )
        .unwrap();
        let registry = minebox_coin::Registry::embedded();
        let settings = minebox_settings::Settings::load(Some(&path), None, &registry).unwrap();
        assert_eq!(stratum_ports(&settings, &registry), vec![4444, 4445], "the pool port of an enabled coin only");
    }
}
