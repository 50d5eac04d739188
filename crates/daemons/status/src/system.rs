//! The box itself: CPU temperature, load, memory, disk, the SSD's health where the kernel
//! exposes it, and uptime. Read from /proc and /sys (rooted elsewhere in tests).

use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Sources {
    pub proc: PathBuf,
    pub sys: PathBuf,
    /// The data partition: chain data, settings and statistics live there.
    pub data: PathBuf,
}

impl Sources {
    pub fn host(data: &Path) -> Sources {
        Sources { proc: "/proc".into(), sys: "/sys".into(), data: data.to_path_buf() }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct System {
    /// Hottest thermal zone, °C (the Pi's SoC sensor); null where there is none.
    pub cpu_temperature_c: Option<f64>,
    pub load: [f64; 3],
    pub cpus: usize,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
    pub disk_path: String,
    pub uptime_secs: f64,
    pub storage: Vec<Storage>,
}

/// One storage device's health figures, as far as the kernel tells them unprivileged.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Storage {
    pub device: String,
    pub model: Option<String>,
    pub temperature_c: Option<f64>,
    /// eMMC/SD wear estimate (1 = 0-10 % used ... 11 = exceeded), where the card reports it.
    pub wear_level: Option<u32>,
}

pub fn read(src: &Sources) -> System {
    let text = |p: PathBuf| std::fs::read_to_string(p).ok();
    let mut s = System { cpu_temperature_c: thermal(&src.sys.join("class/thermal")), ..Default::default() };
    if let Some(l) = text(src.proc.join("loadavg")) {
        let v: Vec<f64> = l.split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect();
        if v.len() == 3 {
            s.load = [v[0], v[1], v[2]];
        }
    }
    s.cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if let Some(m) = text(src.proc.join("meminfo")) {
        s.memory_total_bytes = meminfo(&m, "MemTotal:");
        s.memory_available_bytes = meminfo(&m, "MemAvailable:");
    }
    if let Ok(d) = minebox_platform::fs::disk_space(&src.data) {
        s.disk_total_bytes = d.total_bytes;
        s.disk_free_bytes = d.available_bytes;
    }
    s.disk_path = src.data.display().to_string();
    s.uptime_secs = text(src.proc.join("uptime"))
        .and_then(|u| u.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0);
    s.storage = storage(&src.sys);
    s
}

fn thermal(dir: &Path) -> Option<f64> {
    let mut best: Option<f64> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if !e.file_name().to_string_lossy().starts_with("thermal_zone") {
            continue;
        }
        if let Some(t) = std::fs::read_to_string(e.path().join("temp")).ok().and_then(|t| t.trim().parse::<f64>().ok())
        {
            let c = t / 1000.0;
            best = Some(best.map_or(c, |b: f64| b.max(c)));
        }
    }
    best
}

fn meminfo(text: &str, key: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// NVMe drives report their temperature through hwmon; SD/eMMC cards may report wear.
fn storage(sys: &Path) -> Vec<Storage> {
    let mut out = Vec::new();
    let read = |p: PathBuf| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if let Ok(dir) = std::fs::read_dir(sys.join("class/nvme")) {
        for e in dir.flatten() {
            let p = e.path();
            let mut st = Storage {
                device: e.file_name().to_string_lossy().into_owned(),
                model: read(p.join("model")),
                ..Default::default()
            };
            if let Ok(hw) = std::fs::read_dir(p.join("device/hwmon").canonicalize().unwrap_or(p.join("hwmon"))) {
                for h in hw.flatten() {
                    if let Some(t) = read(h.path().join("temp1_input")).and_then(|t| t.parse::<f64>().ok()) {
                        st.temperature_c = Some(t / 1000.0);
                    }
                }
            }
            out.push(st);
        }
    }
    if let Ok(dir) = std::fs::read_dir(sys.join("block")) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("mmcblk") || name.contains('p') || name.contains("boot") || name.contains("rpmb") {
                continue;
            }
            let dev = e.path().join("device");
            let wear = read(dev.join("life_time")).and_then(|l| {
                l.split_whitespace().map(|x| u32::from_str_radix(x.trim_start_matches("0x"), 16).ok()).max().flatten()
            });
            out.push(Storage { device: name, model: read(dev.join("name")), temperature_c: None, wear_level: wear });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pi_shaped_tree() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let w = |rel: &str, text: &str| {
            let f = p.join(rel);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        };
        w("proc/loadavg", "0.52 0.41 0.30 1/123 4567\n");
        w("proc/meminfo", "MemTotal:        8245760 kB\nMemFree: 1 kB\nMemAvailable:    6123456 kB\n");
        w("proc/uptime", "3600.25 7000.00\n");
        w("sys/class/thermal/thermal_zone0/temp", "61250\n");
        w("sys/class/thermal/thermal_zone1/temp", "48000\n");
        w("sys/class/nvme/nvme0/model", "Samsung SSD 980 1TB   \n");
        w("sys/class/nvme/nvme0/hwmon/hwmon3/temp1_input", "39850\n");
        w("sys/block/mmcblk0/device/life_time", "0x02 0x01\n");
        w("sys/block/mmcblk0/device/name", "SD64G\n");
        w("sys/block/mmcblk0p1/device/name", "partition, skipped\n");
        let s = read(&Sources { proc: p.join("proc"), sys: p.join("sys"), data: p.to_path_buf() });
        assert_eq!(s.cpu_temperature_c, Some(61.25));
        assert_eq!(s.load, [0.52, 0.41, 0.30]);
        assert_eq!(s.memory_total_bytes, 8245760 * 1024);
        assert_eq!(s.memory_available_bytes, 6123456 * 1024);
        assert_eq!(s.uptime_secs, 3600.25);
        assert!(s.disk_total_bytes > 0 && s.disk_free_bytes <= s.disk_total_bytes);
        let nvme = s.storage.iter().find(|x| x.device == "nvme0").unwrap();
        assert_eq!(nvme.model.as_deref(), Some("Samsung SSD 980 1TB"));
        assert_eq!(nvme.temperature_c, Some(39.85));
        let sd = s.storage.iter().find(|x| x.device == "mmcblk0").unwrap();
        assert_eq!(sd.wear_level, Some(2));
        assert_eq!(s.storage.len(), 2);
    }

    #[test]
    fn a_machine_without_sensors_gives_nulls_not_errors() {
        let d = tempfile::tempdir().unwrap();
        let s = read(&Sources { proc: d.path().join("none"), sys: d.path().join("none"), data: d.path().into() });
        assert_eq!(s.cpu_temperature_c, None);
        assert!(s.storage.is_empty());
    }
}
