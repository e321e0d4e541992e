//! A disk that takes only part of a write, for real: the process's file size limit
//! (`RLIMIT_FSIZE`). A write reaching past it writes what fits and the next gets `EFBIG`,
//! as a write on a disk that fills up gets part way and then `ENOSPC`. The limit holds for
//! the whole process, so a test that sets it runs in a process of its own
//! ([`in_a_process_of_its_own`]), whichever way the tests are run; so does any test that
//! depends on what the other tests of its process do.

use std::process::Command;
use std::time::{Duration, Instant};

/// The variable that tells a test's own process which test it is there for.
const ALONE: &str = "FDFS_TEST_ALONE";

/// How long the test may take in its own process.
const CHILD_LIMIT: Duration = Duration::from_secs(300);

/// Whether the calling test should go on here: `true` in a process started for it alone;
/// elsewhere it runs the test again in a process of its own (this test binary, filtered to
/// the test), fails if that fails, runs no test or outlasts [`CHILD_LIMIT`], and returns
/// `false`.
///
/// `here` is the path of a function inside the test, as [`alone!`](crate::alone) passes it.
pub fn in_a_process_of_its_own(here: &str) -> bool {
    let name = test_name(here);
    if std::env::var(ALONE).is_ok_and(|v| v == name) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(exe)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, &name)
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("the test in a process of its own");
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()) && stdout.contains("test result: ok. 1 passed"),
        "{name} in a process of its own: {status:?} (none: killed after {CHILD_LIMIT:?})\n{stdout}\n{stderr}"
    );
    false
}

/// The harness's name of the test that holds function `here`: its path without the crate,
/// the closures of async bodies and the function itself.
fn test_name(here: &str) -> String {
    let path = here.strip_suffix("::here").unwrap_or(here);
    let path = path.replace("::{{closure}}", "");
    // The test harness names tests without the crate's name.
    match path.split_once("::") {
        Some((_, rest)) => rest.to_owned(),
        None => path,
    }
}

/// Runs the rest of the calling test in a process of its own (see
/// [`in_a_process_of_its_own`]): `alone!();` at the test's start.
#[macro_export]
macro_rules! alone {
    () => {{
        fn here() {}
        if !$crate::full_disk::in_a_process_of_its_own(::std::any::type_name_of_val(&here)) {
            return;
        }
    }};
}

/// Appends `bytes` to the file at `path` through a handle of its own, as a write cut short
/// (a crash, a full disk) or one still under way leaves them beside the file's writer.
pub fn append_part(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .unwrap_or_else(|e| panic!("appending to {}: {e}", path.display()));
}

/// From now on no file of this process grows past `bytes` (`None`: no limit again). A write
/// past it gets `EFBIG` instead of the signal that would end the process.
pub fn limit_file_size(bytes: Option<u64>) {
    assert!(
        std::env::var(ALONE).is_ok(),
        "the file size limit holds for the whole process: only in a test's own process"
    );
    // SAFETY: setting a signal's disposition to "ignore" runs no code of ours in a handler.
    let ignored = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    assert_ne!(ignored, libc::SIG_ERR, "SIGXFSZ ignored");
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the call to fill and to read.
    unsafe {
        assert_eq!(
            libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit),
            0,
            "getrlimit"
        );
        limit.rlim_cur = bytes.map_or(limit.rlim_max, |b| b.min(limit.rlim_max));
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tests_are_named_as_the_harness_names_them() {
        for (here, name) in [
            (
                "fdfs_node::disk::tests::a_test::here",
                "disk::tests::a_test",
            ),
            (
                "fdfs_node::disk::tests::an_async_test::{{closure}}::here",
                "disk::tests::an_async_test",
            ),
            ("storage_commands::a_test::{{closure}}::here", "a_test"),
        ] {
            assert_eq!(test_name(here), name);
        }
    }

    #[test]
    fn a_write_past_the_limit_writes_what_fits_and_the_rest_is_refused() {
        crate::alone!();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut f = std::fs::File::create(&path).expect("create");
        limit_file_size(Some(10));
        assert_eq!(f.write(b"0123456789abcdef").expect("part"), 10);
        let refused = f.write(b"abcdef").expect_err("refused");
        assert_eq!(refused.raw_os_error(), Some(libc::EFBIG));
        limit_file_size(None);
        f.write_all(b"abcdef").expect("taken again");
        assert_eq!(std::fs::read(&path).expect("read"), b"0123456789abcdef");
    }
}
