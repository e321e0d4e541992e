//! A third-party FastDFS client from PyPI (py3fdfs) against `fdfs-node local`.

use fdfs_e2e::{LocalProcess, python_venv, repo_root};

#[test]
fn py3fdfs_uploads_downloads_and_deletes() -> anyhow::Result<()> {
    let python = python_venv()?;
    let dir = tempfile::tempdir()?;
    let local = LocalProcess::start(
        &dir.path().join("data"),
        &[
            "--tracker-addr",
            "127.0.24.1:22122",
            "--storage-ip",
            "127.0.24.2",
        ],
    )?;
    let out = std::process::Command::new(python)
        .arg(repo_root().join("e2e/py/py3fdfs_roundtrip.py"))
        .args([
            "--tracker",
            &local.tracker.to_string(),
            "--workdir",
            &dir.path().to_string_lossy(),
        ])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "py3fdfs round trip failed");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("py3fdfs: ") && summary.ends_with(" passed, 0 failed"),
        "{summary}"
    );
    assert!(!summary.starts_with("py3fdfs: 0 passed"), "{summary}");
    assert!(local.terminate()?.success());
    Ok(())
}

/// py3fdfs's monitor calls read only the classic 105/612-byte records: a second
/// tracker port with `monitor_layout = "classic"` serves them, the main port the
/// V6.15+ layouts.
#[test]
fn py3fdfs_reads_groups_and_storages_on_a_classic_port() -> anyhow::Result<()> {
    let python = python_venv()?;
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        "[storage]\nsubdir_count_per_path = 4\n\n[[tracker.listeners]]\n\
         bind = \"127.0.23.1:22200\"\ncompat = { monitor_layout = \"classic\" }\n",
    )?;
    let local = LocalProcess::start(
        &dir.path().join("data"),
        &[
            "--tracker-addr",
            "127.0.23.1:22122",
            "--storage-ip",
            "127.0.23.2",
            "--config",
            &cfg.to_string_lossy(),
        ],
    )?;
    assert_eq!(
        local.extra_ports,
        [("127.0.23.1:22200".parse()?, "ip15,classic".to_owned())]
    );
    let run = |tracker: &str| -> anyhow::Result<(bool, String)> {
        let out = std::process::Command::new(&python)
            .arg(repo_root().join("e2e/py/py3fdfs_monitor.py"))
            .args([
                "--tracker",
                tracker,
                "--group",
                "group1",
                "--storage-ip",
                "127.0.23.2",
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    };
    let (ok, text) = run("127.0.23.1:22200")?;
    assert!(ok, "{text}");
    for line in [
        "groups_count=1",
        "group=group1 count=1 active=1 port=23000",
        "one_group=group1 subdirs=4",
        "storage ip=127.0.23.2 status=7 port=23000 version=6.16.1",
        "py3fdfs-monitor: ok",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }
    // The main port answers V6.15+ records, which this client cannot read.
    let (ok, text) = run("127.0.23.1:22122")?;
    assert!(!ok, "{text}");
    assert!(local.terminate()?.success());
    Ok(())
}
