//! Our signatures against the stock minisign tool (Debian's), both ways it matters: the
//! tool accepts what we sign, and refuses it when anything changed.

use minebox_minisign::SecretKey;
use std::process::Command;

#[test]
fn the_stock_minisign_tool_verifies_our_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let msg = dir.path().join("manifest.json");
    std::fs::write(&msg, b"{\"coin\":\"btc\"}\n").unwrap();
    std::fs::write(
        dir.path().join("manifest.json.minisig"),
        key.sign(&std::fs::read(&msg).unwrap(), "minebox btc main"),
    )
    .unwrap();
    std::fs::write(dir.path().join("minebox.pub"), key.public().to_file()).unwrap();
    let verify = || {
        Command::new("minisign")
            .arg("-Vm")
            .arg(&msg)
            .arg("-p")
            .arg(dir.path().join("minebox.pub"))
            .output()
            .expect("minisign installed (scripts/setup)")
    };
    let out = verify();
    assert!(out.status.success(), "minisign refused: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("minebox btc main"));
    std::fs::write(&msg, b"{\"coin\":\"bch\"}\n").unwrap();
    assert!(!verify().status.success(), "minisign accepted a changed manifest");
}
