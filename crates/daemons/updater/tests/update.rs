//! The updater end to end against real RAUC, the real tryboot backend on a FAT autoboot
//! image, and real nginx serving the channel (see rig/mod.rs for the setup and its doubles).

mod rig;

use rig::Rig;
use serde_json::{json, Value};

fn history(v: &Value) -> Vec<(String, String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["version"].as_str().unwrap().to_string(),
                e["result"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The firmware's view: a normal boot starts partition `all`, a tryboot `tryboot`.
fn assert_firmware(rig: &Rig, all: u8, tryboot: u8) {
    assert_eq!((rig.firmware("[all]"), rig.firmware("[tryboot]")), (all, tryboot), "{}", rig.autoboot_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn good_update_installs_arms_the_trial_and_a_healthy_trial_commits_it() {
    let Some(mut rig) = Rig::new() else { return };
    let b = rig.bundle("2.0", "release", 1);
    rig.publish(&b, "2.0", "bundles");
    rig.start();
    let s = rig.get("/api/v1/update").await;
    assert_eq!(s["current"], json!({"version": "1.0", "slot": "A", "trial": false}));

    let (code, s) = rig.post("/api/v1/update/check", None).await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["available"]["version"], "2.0");
    assert_eq!(s["state"], "idle");

    // Install now (as the status page asks: answered at once, followed through the status):
    // RAUC writes slot B and arms it for one tryboot; the updater reboots.
    let (code, s) = rig.post("/api/v1/update/install", None).await;
    assert_eq!(code, 202, "{s}{}", rig.logs());
    let s = rig.wait_status("the trial reboot", |s| s["state"] == "rebooting").await;
    assert_eq!(s["pending"], "2.0");
    assert_eq!(rig.reboots(), ["0 tryboot"]);
    assert_firmware(&rig, 2, 3);
    let attempt: Value =
        serde_json::from_str(&std::fs::read_to_string(rig.path("state/attempt.json")).unwrap()).unwrap();
    assert_eq!(
        (attempt["version"].as_str(), attempt["from_slot"].as_str(), attempt["phase"].as_str()),
        (Some("2.0"), Some("A"), Some("rebooting"))
    );
    assert!(
        std::fs::read_dir(rig.path("state/downloads")).unwrap().next().is_none(),
        "the bundle is deleted once installed"
    );

    // The trial boot of B: every check passes, so B is committed and boots by default.
    rig.stratum_up(true);
    rig.reboot_into('B', true, "2.0");
    let s = rig.wait_status("the verdict", |s| s["state"] == "idle").await;
    assert_eq!(s["current"], json!({"version": "2.0", "slot": "B", "trial": true}));
    assert_eq!(s["last_result"]["result"], "installed");
    assert_eq!(s["last_result"]["from_version"], "1.0");
    assert_firmware(&rig, 3, 3);
    assert_eq!(rig.reboots().len(), 1, "no reboot after a passed trial");
    assert!(!rig.path("state/attempt.json").exists());
    let h = history(&rig.get("/api/v1/update/history").await);
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].0.as_str(), h[0].1.as_str()), ("2.0", "installed"));

    // The CLI sees the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minebox-updater"))
        .arg("status")
        .arg("--config")
        .arg(rig.path("minebox.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["current"]["version"], "2.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_trial_is_marked_bad_reboots_back_and_reports_the_rollback() {
    let Some(mut rig) = Rig::new() else { return };
    let b = rig.bundle("2.0", "release", 1);
    rig.publish(&b, "2.0", "bundles");
    rig.options.health_timeout_secs = 1;
    rig.start();
    assert_eq!(rig.post("/api/v1/update/check", None).await.0, 200);
    let (code, s) = rig.post("/api/v1/update/install?wait=true", None).await;
    assert_eq!(code, 200, "{s}");
    assert_firmware(&rig, 2, 3);

    // Trial boot of B with nothing listening on the stratum port: the check fails.
    rig.stratum_up(false);
    rig.reboot_into('B', true, "2.0");
    let s = rig.wait_status("the verdict", |s| s["state"] == "rebooting").await;
    let error = s["error"].as_str().unwrap();
    assert!(
        error.contains("health check failed") && error.contains(&format!("stratum 127.0.0.1:{}", rig.stratum_port)),
        "{error}"
    );
    assert_eq!(rig.reboots(), ["0 tryboot", "normal"], "a normal reboot back, not another trial");
    // B is bad: the firmware boots A by default and on tryboot alike.
    assert_firmware(&rig, 2, 2);
    assert!(rig.autoboot_text().contains("B=bad"), "{}", rig.autoboot_text());

    // The normal boot of A afterwards reports the rollback.
    rig.reboot_into('A', false, "1.0");
    let s = rig.wait_status("idle", |s| s["state"] == "idle").await;
    assert_eq!(s["last_result"]["result"], "rolled-back");
    let msg = s["last_result"]["message"].as_str().unwrap();
    assert!(msg.starts_with("update to 2.0 failed, rolled back: health check failed"), "{msg}");
    let h = history(&rig.get("/api/v1/update/history").await);
    assert_eq!(h.len(), 1);
    assert_eq!(rig.reboots().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_download_is_refused_and_deleted() {
    let Some(mut rig) = Rig::new() else { return };
    let b = rig.bundle("2.0", "release", 1);
    rig.publish(&b, "2.0", "bundles");
    // Someone between the publisher and the box flips one byte of the bundle.
    let served = rig.path("www/bundles/2.0-release.raucb");
    let mut bytes = std::fs::read(&served).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&served, bytes).unwrap();
    rig.start();
    assert_eq!(rig.post("/api/v1/update/check", None).await.0, 200);
    let (code, s) = rig.post("/api/v1/update/install?wait=true", None).await;
    assert_eq!(code, 422);
    let e = s["error"].as_str().unwrap();
    assert!(e.contains("SHA-256") && e.contains("refused and deleted"), "{e}");
    assert!(std::fs::read_dir(rig.path("state/downloads")).unwrap().next().is_none());
    let s = rig.get("/api/v1/update").await;
    assert_eq!(s["state"], "failed");
    assert_eq!(s["last_result"]["result"], "failed");
    assert_firmware(&rig, 2, 2);
    assert!(rig.reboots().is_empty());

    // An oversized file (longer than the manifest says) is refused too.
    let mut bytes = std::fs::read(&b).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&served, bytes).unwrap();
    assert_eq!(rig.post("/api/v1/update/check", None).await.0, 200);
    let (code, s) = rig.post("/api/v1/update/install?wait=true", None).await;
    assert_eq!(code, 422);
    assert!(s["error"].as_str().unwrap().contains("larger than"), "{s}");
    assert!(std::fs::read_dir(rig.path("state/downloads")).unwrap().next().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn manifests_with_a_bad_signature_or_an_unknown_key_are_refused() {
    let Some(mut rig) = Rig::new() else { return };
    let b = rig.bundle("2.0", "release", 1);
    rig.publish(&b, "2.0", "bundles");
    // Altered after signing: points the box at another bundle.
    let m = rig.manifest_path();
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, text.replace("2.0-release", "2.0-evil")).unwrap();
    rig.start();
    let (code, s) = rig.post("/api/v1/update/check", None).await;
    assert_eq!(code, 422);
    assert!(s["error"].as_str().unwrap().contains("manifest signature refused: bad signature"), "{s}");
    assert_eq!(rig.get("/api/v1/update").await["available"], Value::Null);

    // Signed properly, but by a key the box does not pin.
    std::fs::remove_file(rig.path("keys/update-release.pub")).unwrap();
    let other = minebox_minisign::SecretKey::generate();
    std::fs::write(rig.path("keys/update-other.pub"), other.public().to_file()).unwrap();
    rig.publish(&b, "2.0", "bundles");
    let (code, s) = rig.post("/api/v1/update/check", None).await;
    assert_eq!(code, 422);
    assert!(s["error"].as_str().unwrap().contains("not one of the pinned keys"), "{s}");
    assert_eq!(rig.post("/api/v1/update/install?wait=true", None).await.0, 422, "nothing to install");
    assert_firmware(&rig, 2, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn bundles_rauc_does_not_trust_are_refused() {
    let Some(mut rig) = Rig::new() else { return };
    // A validly signed manifest for a bundle signed by another certificate.
    let evil = rig.bundle("2.0", "attacker", 1);
    rig.publish(&evil, "2.0", "bundles");
    rig.start();
    assert_eq!(rig.post("/api/v1/update/check", None).await.0, 200);
    let (code, s) = rig.post("/api/v1/update/install?wait=true", None).await;
    assert_eq!(code, 422);
    assert!(s["error"].as_str().unwrap().starts_with("RAUC refused the bundle"), "{s}");

    // An unsigned bundle (signature stripped), uploaded.
    let good = rig.bundle("3.0", "release", 1);
    let bytes = std::fs::read(&good).unwrap();
    let mut unsigned = bytes[..bytes.len() - 8].to_vec();
    unsigned.extend_from_slice(&[0u8; 8]);
    let r = reqwest::Client::new()
        .post(rig.url("/api/v1/update/upload?reboot=now&wait=true"))
        .header("content-type", "application/octet-stream")
        .body(unsigned)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let s: Value = r.json().await.unwrap();
    assert!(s["error"].as_str().unwrap().starts_with("RAUC refused the bundle"), "{s}");
    assert_firmware(&rig, 2, 2);
    assert!(rig.reboots().is_empty());
    let h = history(&rig.get("/api/v1/update/history").await);
    assert_eq!(h.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(), ["failed", "failed"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_download_resumes_where_it_stopped() {
    let Some(mut rig) = Rig::new() else { return };
    // Served slowly (nginx limit_rate) so the updater can be killed in the middle.
    let b = rig.bundle("2.0", "release", 4);
    rig.publish(&b, "2.0", "slow");
    let size = std::fs::metadata(&b).unwrap().len();
    // Stopped twice in the middle: by systemd (SIGTERM, a clean exit) and by a crash (SIGKILL).
    let mut kept = Vec::new();
    for sig in ["TERM", "KILL"] {
        rig.start();
        assert_eq!(rig.post("/api/v1/update/check", None).await.0, 200);
        let api = rig.url("/api/v1/update/install");
        let install = tokio::spawn(async move { reqwest::Client::new().post(api).send().await });
        let before = kept.last().copied().unwrap_or(0);
        let s = rig
            .wait_status("more of the download", |s| s["progress"]["done"].as_u64().unwrap_or(0) > before + 256 * 1024)
            .await;
        assert_eq!(s["state"], "downloading");
        assert_eq!(s["progress"]["total"], size);
        let exit = rig.stop(sig).unwrap();
        if sig == "TERM" {
            assert!(exit.success(), "a clean exit on SIGTERM: {exit}");
        }
        let _ = install.await;
        let partial = std::fs::read_dir(rig.path("state/downloads")).unwrap().next().unwrap().unwrap();
        assert!(partial.file_name().to_string_lossy().ends_with(".partial"));
        kept.push(partial.metadata().unwrap().len());
    }
    assert!(kept[0] > 0 && kept[1] > kept[0], "{kept:?}");

    rig.start();
    assert_eq!(rig.post("/api/v1/update/check", None).await.0, 200);
    let (code, s) = rig.post("/api/v1/update/install?wait=true", None).await;
    assert_eq!(code, 200, "{s}");
    assert_firmware(&rig, 2, 3);
    // Each later request asked only for the rest, from where the file on disk ended.
    let log = rig.access_log();
    let requests: Vec<&str> = log.lines().filter(|l| l.starts_with("/slow/")).collect();
    assert_eq!(requests.len(), 3, "{log}");
    assert!(requests[0].contains(" 200 range=- "), "{log}");
    for (line, kept) in requests[1..].iter().zip(&kept) {
        assert!(line.contains(" 206 "), "{log}");
        let from: u64 = line.split("range=bytes=").nth(1).unwrap().split('-').next().unwrap().parse().unwrap();
        assert_eq!(from, *kept, "resumed where the file on disk ended: {log}");
    }
    let sent: u64 = requests[2].split("sent=").nth(1).unwrap().trim().parse().unwrap();
    assert_eq!(sent, size - kept[1], "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_bundle_installs_and_waits_for_the_reboot_window() {
    let Some(mut rig) = Rig::new() else { return };
    // A window that is certainly not now: it opens in two hours.
    let now = chrono::Local::now();
    let from = now + chrono::Duration::hours(2);
    let to = now + chrono::Duration::hours(3);
    rig.options.window = format!("{}-{}", from.format("%H:%M"), to.format("%H:%M"));
    rig.start();
    let b = rig.bundle("2.0", "release", 1);
    // Through the CLI, which streams the file to POST /api/v1/update/upload.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minebox-updater"))
        .args(["install"])
        .arg(&b)
        .arg("--config")
        .arg(rig.path("minebox.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), rig.logs());
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["state"], "waiting-for-window");
    assert_eq!(s["pending"], "2.0");
    assert!(s["reboot_at"].as_str().unwrap().contains(&from.format("T%H:%M").to_string()), "{s}");
    assert_firmware(&rig, 2, 3);
    assert!(rig.reboots().is_empty(), "not before the window");
    assert!(!rig.path("state/uploads/upload.raucb").exists(), "the upload is deleted once installed");

    // A restart keeps waiting for the same window; "install now" reboots at once.
    rig.stop("TERM");
    rig.start();
    let s = rig.wait_status("waiting", |s| s["state"] == "waiting-for-window").await;
    assert_eq!(s["pending"], "2.0");
    let (code, s) = rig.post("/api/v1/update/usb?reboot=now&wait=true", None).await;
    assert_eq!(code, 422, "no stick: {s}");
    std::fs::create_dir_all(rig.path("usb/STICK")).unwrap();
    let b3 = rig.bundle("3.0", "release", 1);
    std::fs::copy(&b3, rig.path("usb/STICK/minebox-3.0.raucb")).unwrap();
    let (code, s) = rig.post("/api/v1/update/usb?reboot=now&wait=true", None).await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["state"], "rebooting");
    assert_eq!(rig.reboots(), ["0 tryboot"]);
    let attempt = std::fs::read_to_string(rig.path("state/attempt.json")).unwrap();
    assert!(attempt.contains("\"3.0\""), "{attempt}");
    assert!(rig.path("usb/STICK/minebox-3.0.raucb").exists(), "the stick is left alone");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_version_and_another_board_are_not_installed() {
    let Some(mut rig) = Rig::new() else { return };
    let same = rig.bundle("1.0", "release", 1);
    rig.publish(&same, "1.0", "bundles");
    rig.start();
    let (code, s) = rig.post("/api/v1/update/check", None).await;
    assert_eq!(code, 200);
    assert_eq!(s["available"], Value::Null, "1.0 is running");
    let m = std::fs::read_to_string(rig.manifest_path()).unwrap();
    let mut v: Value = serde_json::from_str(&m).unwrap();
    v["compatible"] = json!("minebox-x86_64");
    v["version"] = json!("2.0");
    let (text, sig) = minebox_updater::manifest::sign(&serde_json::from_value(v).unwrap(), &rig.key);
    std::fs::write(rig.manifest_path(), text).unwrap();
    std::fs::write(format!("{}.minisig", rig.manifest_path().display()), sig).unwrap();
    let (code, s) = rig.post("/api/v1/update/check", None).await;
    assert_eq!(code, 422);
    assert!(s["error"].as_str().unwrap().contains("this box is \"minebox-rpi5\""), "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_auto_install_the_box_updates_itself_and_a_usb_stick_is_used_at_startup() {
    let Some(mut rig) = Rig::new() else { return };
    let b = rig.bundle("2.0", "release", 1);
    rig.publish(&b, "2.0", "bundles");
    rig.options.auto_install = true;
    // The first check runs at startup; the window is "any", so it reboots at once.
    rig.start();
    let s = rig.wait_status("the trial reboot", |s| s["state"] == "rebooting").await;
    assert_eq!(s["current"]["version"], "1.0");
    assert_eq!(rig.reboots(), ["0 tryboot"]);
    assert_firmware(&rig, 2, 3);

    // A stick with a bundle, present when the box starts (a normal boot of A after the
    // trial never happened, e.g. power lost before it): installed once, not at every boot.
    rig.stop("TERM");
    std::fs::remove_file(rig.path("state/attempt.json")).unwrap();
    std::fs::remove_file(rig.manifest_path()).unwrap();
    std::fs::copy(rig.bundle("3.0", "release", 1), rig.path("usb/minebox-3.0.raucb")).unwrap();
    rig.start();
    let s = rig.wait_status("the USB install", |s| s["state"] == "rebooting").await;
    assert_eq!(rig.reboots(), ["0 tryboot", "0 tryboot"], "{s}");
    assert!(std::fs::read_to_string(rig.path("state/attempt.json")).unwrap().contains("\"3.0\""));
    rig.stop("TERM");
    std::fs::remove_file(rig.path("state/attempt.json")).unwrap();
    rig.start();
    // The worker looks at the stick before its first check, which fails (no manifest now).
    let s = rig.wait_status("the first check", |s| s["state"] == "failed").await;
    assert!(s["error"].as_str().unwrap().contains("404"), "{s}");
    assert_eq!(rig.reboots().len(), 2, "the same stick is not installed again: {s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_larger_than_allowed_is_refused_and_deleted() {
    let Some(mut rig) = Rig::new() else { return };
    rig.options.max_bundle_mib = 1;
    rig.start();
    let b = rig.bundle("2.0", "release", 2);
    let r = reqwest::Client::new()
        .post(rig.url("/api/v1/update/upload"))
        .header("content-type", "application/octet-stream")
        .body(std::fs::read(&b).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let s: Value = r.json().await.unwrap();
    assert!(s["error"].as_str().unwrap().contains("larger than 1048576 bytes"), "{s}");
    assert!(!rig.path("state/uploads/upload.raucb").exists());
    assert_firmware(&rig, 2, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_health_command_reports_each_check_and_exits_nonzero_when_unhealthy() {
    let Some(mut rig) = Rig::new() else { return };
    rig.start();
    let health = |rig: &Rig| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_minebox-updater"))
            .arg("health")
            .arg("--config")
            .arg(rig.path("minebox.toml"))
            .output()
            .unwrap();
        (out.status.success(), serde_json::from_slice::<Value>(&out.stdout).unwrap())
    };
    rig.stratum_up(true);
    let (ok, report) = health(&rig);
    assert!(ok, "{report:#}");
    assert_eq!(report["healthy"], true);
    let names: Vec<&str> = report["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, [format!("stratum 127.0.0.1:{}", rig.stratum_port).as_str(), "status page", "supervisor nodes"]);
    rig.stratum_up(false);
    std::fs::remove_file(rig.path("www/api/v1/nodes")).unwrap();
    let (ok, report) = health(&rig);
    assert!(!ok);
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, [format!("stratum 127.0.0.1:{}", rig.stratum_port).as_str(), "supervisor nodes"]);
}
