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
