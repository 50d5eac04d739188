//! Sampling each process from /proc, and the verdict: growth per hour of descriptors and
//! memory over the second half of the run (the first half is warm-up), by the Theil-Sen
//! estimator (the median of the slopes between every two samples), so a sample that lands
//! on a reconnect storm or a node restart does not tilt the line.

use serde::Serialize;
use std::collections::BTreeMap;

/// Linux reports CPU time in USER_HZ, 100 on every platform MineBox runs on.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcSample {
    pub fds: u64,
    pub sockets: u64,
    pub rss_kib: u64,
    pub threads: u64,
    /// utime + stime, ticks.
    pub cpu_ticks: u64,
}

pub fn read_proc(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let cpu_ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (mut fds, mut sockets) = (0, 0);
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        fds += 1;
        if std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")) {
            sockets += 1;
        }
    }
    Some(ProcSample { fds, sockets, rss_kib: field("VmRSS:"), threads: field("Threads:"), cpu_ticks })
}

/// CPU use between two samples of the same process, percent of one core.
pub fn cpu_percent(before: &ProcSample, after: &ProcSample, secs: f64) -> f64 {
    after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / TICKS_PER_SEC / secs.max(0.001) * 100.0
}

/// One row of samples.csv.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub t_secs: f64,
    pub process: String,
    pub pid: u32,
    pub fds: u64,
    pub sockets: u64,
    pub rss_kib: u64,
    pub threads: u64,
    /// Empty for the first sample of a process (and of a restarted node).
    pub cpu_percent: Option<f64>,
}

pub fn theil_sen(points: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::new();
    for i in 0..points.len() {
        for j in i + 1..points.len() {
            let dx = points[j].0 - points[i].0;
            if dx > 0.0 {
                slopes.push((points[j].1 - points[i].1) / dx);
            }
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    slopes.sort_by(f64::total_cmp);
    let m = slopes.len() / 2;
    if slopes.len() % 2 == 1 {
        slopes[m]
    } else {
        (slopes[m - 1] + slopes[m]) / 2.0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Debug, Clone, Serialize)]
pub struct Tolerance {
    /// Descriptors per hour.
    pub fds_per_hour: f64,
    /// RSS MiB per hour: the larger of this and `rss_fraction_per_hour` of the median.
    pub rss_mib_per_hour: f64,
    pub rss_fraction_per_hour: f64,
    /// Threads per hour.
    pub threads_per_hour: f64,
    /// Percent of a core per hour.
    pub cpu_points_per_hour: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            fds_per_hour: 12.0,
            rss_mib_per_hour: 4.0,
            rss_fraction_per_hour: 0.05,
            threads_per_hour: 2.0,
            cpu_points_per_hour: 5.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub process: String,
    /// Whether the verdict judges it (MineBox's own services; not bitcoind or the soak tool).
    pub judged: bool,
    pub samples_judged: usize,
    pub fds_start: u64,
    pub fds_half: u64,
    pub fds_end: u64,
    pub fds_max: u64,
    pub fds_per_hour: f64,
    pub rss_mib_start: f64,
    pub rss_mib_half: f64,
    pub rss_mib_end: f64,
    pub rss_mib_max: f64,
    pub rss_mib_per_hour: f64,
    pub threads_start: u64,
    pub threads_end: u64,
    pub threads_per_hour: f64,
    pub cpu_start: f64,
    pub cpu_end: f64,
    pub cpu_mean: f64,
    pub cpu_per_hour: f64,
    /// What grew beyond its tolerance (empty: nothing).
    pub growth: Vec<String>,
}

/// Figures per process: start = first sample, end = last; slopes over the second half.
pub fn judge(rows: &[Row], duration_secs: f64, tol: &Tolerance, judged: &[&str]) -> Vec<Figures> {
    let mut by: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by.entry(r.process.as_str()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (name, rs) in by {
        let (Some(first), Some(last)) = (rs.first(), rs.last()) else { continue };
        let half: Vec<&&Row> = rs.iter().filter(|r| r.t_secs >= duration_secs / 2.0).collect();
        let pts =
            |f: &dyn Fn(&Row) -> f64| -> Vec<(f64, f64)> { half.iter().map(|r| (r.t_secs / 3600.0, f(r))).collect() };
        let fds_per_hour = theil_sen(&pts(&|r| r.fds as f64));
        let rss_mib_per_hour = theil_sen(&pts(&|r| r.rss_kib as f64 / 1024.0));
        let threads_per_hour = theil_sen(&pts(&|r| r.threads as f64));
        let cpu_pts: Vec<(f64, f64)> =
            half.iter().filter_map(|r| r.cpu_percent.map(|c| (r.t_secs / 3600.0, c))).collect();
        let cpu_per_hour = theil_sen(&cpu_pts);
        let cpus: Vec<f64> = rs.iter().filter_map(|r| r.cpu_percent).collect();
        let rss_median = median(half.iter().map(|r| r.rss_kib as f64 / 1024.0).collect());
        let rss_allowed = tol.rss_mib_per_hour.max(tol.rss_fraction_per_hour * rss_median);
        let mut growth = Vec::new();
        let is_judged = judged.contains(&name);
        if is_judged {
            if fds_per_hour > tol.fds_per_hour {
                growth.push(format!("descriptors +{fds_per_hour:.1}/h (tolerance {:.0}/h)", tol.fds_per_hour));
            }
            if rss_mib_per_hour > rss_allowed {
                growth.push(format!("RSS +{rss_mib_per_hour:.2} MiB/h (tolerance {rss_allowed:.1} MiB/h)"));
            }
            if threads_per_hour > tol.threads_per_hour {
                growth.push(format!("threads +{threads_per_hour:.1}/h (tolerance {:.0}/h)", tol.threads_per_hour));
            }
            if cpu_per_hour > tol.cpu_points_per_hour {
                growth.push(format!(
                    "CPU +{cpu_per_hour:.1} points/h (tolerance {:.0} points of a core/h)",
                    tol.cpu_points_per_hour
                ));
            }
        }
        out.push(Figures {
            process: name.to_string(),
            judged: is_judged,
            samples_judged: half.len(),
            fds_start: first.fds,
            fds_half: half.first().map_or(0, |r| r.fds),
            fds_end: last.fds,
            fds_max: rs.iter().map(|r| r.fds).max().unwrap_or(0),
            fds_per_hour,
            rss_mib_start: first.rss_kib as f64 / 1024.0,
            rss_mib_half: half.first().map_or(0.0, |r| r.rss_kib as f64 / 1024.0),
            rss_mib_end: last.rss_kib as f64 / 1024.0,
            rss_mib_max: rs.iter().map(|r| r.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
            rss_mib_per_hour,
            threads_start: first.threads,
            threads_end: last.threads,
            threads_per_hour,
            cpu_start: rs.iter().find_map(|r| r.cpu_percent).unwrap_or(f64::NAN),
            cpu_end: last.cpu_percent.unwrap_or(f64::NAN),
            cpu_mean: cpus.iter().sum::<f64>() / cpus.len().max(1) as f64,
            cpu_per_hour,
            growth,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theil_sen_ignores_one_outlier() {
        let mut pts: Vec<(f64, f64)> = (0..30).map(|i| (i as f64, 100.0 + 2.0 * i as f64)).collect();
        pts[10].1 = -400.0;
        assert!((theil_sen(&pts) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn reads_this_process() {
        let s = read_proc(std::process::id()).unwrap();
        assert!(s.fds > 0 && s.rss_kib > 0 && s.threads > 0);
    }
}
