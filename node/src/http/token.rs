//! The anti-leech token of fastdfs-nginx-module:
//! `lowercase_hex(md5(file_id_without_group ‖ secret ‖ decimal(ts)))`.

use md5::{Digest, Md5};

/// Computes the token for a remote filename (`M00/00/00/…`, no group) at `ts`.
pub fn token(remote_filename: &str, secret: &str, ts: u64) -> String {
    let mut h = Md5::new();
    h.update(remote_filename.as_bytes());
    h.update(secret.as_bytes());
    h.update(ts.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Expired,
    Wrong,
}

/// Checks `token`/`ts` from the query string against the secret and the TTL.
pub fn check(
    remote_filename: &str,
    secret: &str,
    ttl: u64,
    token_param: Option<&str>,
    ts_param: Option<&str>,
    now: u64,
) -> Result<(), TokenError> {
    let (Some(given), Some(ts)) = (token_param, ts_param) else {
        return Err(TokenError::Missing);
    };
    let ts: u64 = ts.parse().map_err(|_| TokenError::Wrong)?;
    // Tokens from the future are as suspect as old ones.
    if now.saturating_sub(ts) > ttl || ts > now + ttl {
        return Err(TokenError::Expired);
    }
    let expected = token(remote_filename, secret, ts);
    // Constant-time comparison: the token is a secret-derived value.
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same { Ok(()) } else { Err(TokenError::Wrong) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked example: file `M00/00/00/wKgBAmVT8QCAEjRWAAAE0jYQpoY123.jpg`, secret
    /// `FastDFS1234567890`, ts 1700000000 → md5 of the concatenation.
    #[test]
    fn worked_example() {
        let name = "M00/00/00/wKgBAmVT8QCAEjRWAAAE0jYQpoY123.jpg";
        let t = token(name, "FastDFS1234567890", 1_700_000_000);
        let mut h = Md5::new();
        h.update(b"M00/00/00/wKgBAmVT8QCAEjRWAAAE0jYQpoY123.jpgFastDFS12345678901700000000");
        let direct: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(t, direct);
        assert_eq!(t.len(), 32);
        assert_eq!(
            check(
                name,
                "FastDFS1234567890",
                600,
                Some(&t),
                Some("1700000000"),
                1_700_000_100
            ),
            Ok(())
        );
        assert_eq!(
            check(
                name,
                "FastDFS1234567890",
                600,
                Some(&t),
                Some("1700000000"),
                1_700_000_601
            ),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check(
                name,
                "other",
                600,
                Some(&t),
                Some("1700000000"),
                1_700_000_100
            ),
            Err(TokenError::Wrong)
        );
        assert_eq!(
            check(name, "FastDFS1234567890", 600, None, Some("1"), 1),
            Err(TokenError::Missing)
        );
    }
}
