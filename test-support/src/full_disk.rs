//! A disk that takes only part of a write, for real: the process's file size limit
//! (`RLIMIT_FSIZE`). A write reaching past it writes what fits and the next gets `EFBIG`,
//! as a write on a disk that fills up gets part way and then `ENOSPC`. The limit holds for
//! the whole process, so a test that sets it runs in a process of its own
//! ([`in_a_process_of_its_own`]), whichever way the tests are run; so does any test that
//! depends on what the other tests of its process do.

use std::process::Command;

/// The variable that tells a test's own process which test it is there for.
const ALONE: &str = "FDFS_TEST_ALONE";

/// Whether the calling test should go on here: `true` in a process started for it alone;
/// elsewhere it runs the test again in a process of its own (this test binary, filtered to
/// the test), fails if that fails or ran no test, and returns `false`.
///
/// `test` is the test's path from [`module_path!`], as [`alone!`](crate::alone) passes it.
pub fn in_a_process_of_its_own(test: &str) -> bool {
    // The test harness names tests without the crate's name.
    let name = test.split_once("::").map_or(test, |(_, rest)| rest);
    if std::env::var(ALONE).is_ok_and(|v| v == name) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, name)
        .output()
        .expect("the test in a process of its own");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} in a process of its own: {}\n{stdout}\n{stderr}",
        out.status
    );
    false
}

/// Runs the rest of the calling test in a process of its own (see
/// [`in_a_process_of_its_own`]); `alone!(test_fn_name)` at the test's start.
#[macro_export]
macro_rules! alone {
    ($test:ident) => {
        if !$crate::full_disk::in_a_process_of_its_own(concat!(
            module_path!(),
            "::",
            stringify!($test)
        )) {
            return;
        }
    };
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
    fn a_write_past_the_limit_writes_what_fits_and_the_rest_is_refused() {
        crate::alone!(a_write_past_the_limit_writes_what_fits_and_the_rest_is_refused);
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
