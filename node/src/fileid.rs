//! FastDFS file IDs: `group/Mxx/HH/LL/<27 base64 chars><7-char ext>`.
//!
//! The 27 characters are URL-safe base64 (no padding) of 20 bytes:
//!
//! ```text
//! | source: 4 bytes | timestamp u32 BE | size field u64 BE | crc32 u32 BE |
//! ```
//!
//! The source is the IPv4 octets of the storage that received the upload, or a
//! numeric server id as a little-endian u32. The size field carries flag bits
//! (appender, trunk) and random high bits that keep names unique.

use std::fmt;
use std::net::Ipv4Addr;

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Characters of the encoded 20-byte core.
pub const BASE64_LEN: usize = 27;
/// Characters of the formatted extension that follows the core.
pub const FORMATTED_EXT_LEN: usize = 7;
/// Length of `Mxx/HH/LL/`.
pub const LOGIC_PATH_LEN: usize = 10;
/// Length of a normal remote filename.
pub const NORMAL_REMOTE_LEN: usize = LOGIC_PATH_LEN + BASE64_LEN + FORMATTED_EXT_LEN;
/// Length of a trunk remote filename (16 extra base64 chars of trunk location).
pub const TRUNK_REMOTE_LEN: usize = NORMAL_REMOTE_LEN + 16;
/// Longest group name.
pub const MAX_GROUP_LEN: usize = 16;
/// Longest file name part (after `Mxx/HH/LL/`) we accept.
pub const MAX_NAME_LEN: usize = 128;
/// Bit 58: appender file.
pub const APPENDER_FLAG: u64 = 1 << 58;
/// Bit 59: file stored inside a trunk.
pub const TRUNK_FLAG: u64 = 1 << 59;
/// Largest numeric server id (2^24 − 1).
pub const MAX_SERVER_ID: u32 = 0x00FF_FFFF;

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Why a file ID or remote filename was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileIdError {
    #[error("file ID {0:?} has no group part (expected group/Mxx/HH/LL/name)")]
    NoGroup(String),
    #[error("group name {0:?} is empty, longer than 16 bytes or has bad characters")]
    BadGroup(String),
    #[error("remote filename {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
}

fn bad(name: &str, reason: &'static str) -> FileIdError {
    FileIdError::BadName {
        name: name.chars().take(200).collect(),
        reason,
    }
}

/// Where a file came from: an IPv4 storage address or a numeric storage id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Ip(Ipv4Addr),
    ServerId(u32),
}

impl Source {
    fn to_bytes(self) -> [u8; 4] {
        match self {
            Source::Ip(ip) => ip.octets(),
            Source::ServerId(id) => id.to_le_bytes(),
        }
    }

    fn from_bytes(b: [u8; 4]) -> Self {
        let v = u32::from_le_bytes(b);
        // C checks the value as a signed int in 1..=2^24−1.
        if (v as i32) > 0 && v <= MAX_SERVER_ID {
            Source::ServerId(v)
        } else {
            Source::Ip(Ipv4Addr::from(b))
        }
    }
}

impl From<Ipv4Addr> for Source {
    fn from(ip: Ipv4Addr) -> Self {
        Source::Ip(ip)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Ip(ip) => write!(f, "{ip}"),
            Source::ServerId(id) => write!(f, "{id}"),
        }
    }
}

/// The 20 bytes behind the 27 base64 characters of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameCore {
    pub source: Source,
    pub timestamp: u32,
    pub size_field: u64,
    pub crc32: u32,
}

impl NameCore {
    pub fn encode(&self) -> String {
        let mut raw = [0u8; 20];
        raw[..4].copy_from_slice(&self.source.to_bytes());
        raw[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        raw[8..16].copy_from_slice(&self.size_field.to_be_bytes());
        raw[16..].copy_from_slice(&self.crc32.to_be_bytes());
        ENGINE.encode(raw)
    }

    pub fn decode(chars: &str) -> Result<Self, FileIdError> {
        if chars.len() != BASE64_LEN {
            return Err(bad(chars, "the encoded part must be 27 characters"));
        }
        let raw = ENGINE
            .decode(chars)
            .map_err(|_| bad(chars, "the encoded part is not base64"))?;
        let raw: [u8; 20] = raw
            .try_into()
            .map_err(|_| bad(chars, "the encoded part is not 20 bytes"))?;
        let mut src = [0u8; 4];
        src.copy_from_slice(&raw[..4]);
        let mut ts = [0u8; 4];
        ts.copy_from_slice(&raw[4..8]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&raw[8..16]);
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&raw[16..]);
        Ok(NameCore {
            source: Source::from_bytes(src),
            timestamp: u32::from_be_bytes(ts),
            size_field: u64::from_be_bytes(size),
            crc32: u32::from_be_bytes(crc),
        })
    }

    pub fn is_appender(&self) -> bool {
        self.size_field & APPENDER_FLAG != 0
    }

    pub fn is_trunk(&self) -> bool {
        self.size_field & TRUNK_FLAG != 0
    }

    /// The file size the name records (not authoritative for appender files).
    pub fn file_size(&self) -> u64 {
        if self.size_field & (1 << 63) != 0 || self.is_trunk() {
            self.size_field & 0xFFFF_FFFF
        } else {
            self.size_field
        }
    }
}

/// Size field of a normal file: random high bits keep same-second names apart.
pub fn normal_size_field(size: u64, rand23: u32) -> u64 {
    if size >> 32 != 0 {
        size
    } else {
        (u64::from(0x8000_0000 | (rand23 & 0x007F_FFFF)) << 32) | size
    }
}

/// Size field of a file stored in a trunk slot: random high bits, the trunk flag, and
/// the size (below 4 GiB: a slot is smaller than its trunk file).
pub fn trunk_size_field(size: u32, rand23: u32) -> u64 {
    (u64::from(0x8000_0000 | (rand23 & 0x007F_FFFF)) << 32) | TRUNK_FLAG | u64::from(size)
}

/// Size field of an appender file: size 0 plus the appender flag.
pub fn appender_size_field(rand23: u32) -> u64 {
    (u64::from(0x8000_0000 | (rand23 & 0x007F_FFFF)) << 32) | APPENDER_FLAG
}

/// Whether `ext` may be used as an upload extension (`[A-Za-z0-9._-]`, ≤ 6 bytes).
pub fn valid_ext(ext: &str) -> bool {
    ext.len() <= 6
        && ext
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The 7-character suffix: random digits, then `.ext` when there is one.
pub fn format_ext(ext: &str, mut digit: impl FnMut() -> u8) -> String {
    let mut out = String::with_capacity(FORMATTED_EXT_LEN);
    let digits = if ext.is_empty() {
        FORMATTED_EXT_LEN
    } else {
        6 - ext.len().min(6)
    };
    for _ in 0..digits {
        out.push(char::from(b'0' + digit() % 10));
    }
    if !ext.is_empty() {
        out.push('.');
        out.push_str(&ext[..ext.len().min(6)]);
    }
    out
}

/// The classic PJW/ELF hash on signed 32-bit ints, as FastDFS's hash dir mode uses it.
pub fn pjw_hash(bytes: &[u8]) -> i32 {
    let mut h: i32 = 0;
    for &b in bytes {
        h = h.wrapping_shl(4).wrapping_add(i32::from(b as i8));
        let t = h & (0xF000_0000u32 as i32);
        if t != 0 {
            h = (h ^ (t >> 24)) & 0x0FFF_FFFF;
        }
    }
    h
}

/// `HH`/`LL` for `file_distribute_path_mode = 1`.
pub fn hashed_subdirs(core_chars: &str, subdir_count: u32) -> (u32, u32) {
    let n = (pjw_hash(core_chars.as_bytes()) as u32) % 65536;
    (((n >> 8) & 0xFF) % subdir_count, (n & 0xFF) % subdir_count)
}

/// Where a trunk-stored file lives: the 12 bytes behind the 16 base64 characters that
/// follow the core in a trunk file's name (each u32 big-endian). The trunk file is
/// `data/HH/LL/<id, 6 digits>` of the name's store path; the slot starts at `offset`
/// and takes `size` bytes, its 24-byte header included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkSlot {
    pub id: u32,
    pub offset: u32,
    pub size: u32,
}

impl TrunkSlot {
    /// Characters of the encoded slot in a name.
    pub const ENCODED_LEN: usize = 16;

    pub fn encode(&self) -> String {
        let mut raw = [0u8; 12];
        raw[..4].copy_from_slice(&self.id.to_be_bytes());
        raw[4..8].copy_from_slice(&self.offset.to_be_bytes());
        raw[8..].copy_from_slice(&self.size.to_be_bytes());
        ENGINE.encode(raw)
    }

    pub fn decode(chars: &str) -> Result<Self, FileIdError> {
        let raw = ENGINE
            .decode(chars)
            .ok()
            .filter(|_| chars.len() == Self::ENCODED_LEN)
            .ok_or_else(|| bad(chars, "the trunk slot is not 16 base64 characters"))?;
        let word = |i: usize| u32::from_be_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
        Ok(TrunkSlot {
            id: word(0),
            offset: word(4),
            size: word(8),
        })
    }
}

/// A remote filename (`Mxx/HH/LL/name`), checked so it can never leave its store path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteName {
    pub store_path: u8,
    pub hh: u8,
    pub ll: u8,
    /// The file name inside `HH/LL/`.
    pub name: String,
}

fn upper_hex_byte(s: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    Some(digit(s[0])? << 4 | digit(s[1])?)
}

impl RemoteName {
    pub fn new(store_path: u8, hh: u8, ll: u8, name: String) -> Self {
        RemoteName {
            store_path,
            hh,
            ll,
            name,
        }
    }

    /// Parses and validates `Mxx/HH/LL/name`.
    ///
    /// Only `[A-Za-z0-9._-]` is allowed in the name, and it may not start with a
    /// dot, so `..`, separators, NUL and hidden temp files are all refused.
    pub fn parse(text: &str) -> Result<Self, FileIdError> {
        let b = text.as_bytes();
        if b.len() <= LOGIC_PATH_LEN {
            return Err(bad(text, "too short"));
        }
        if b[0] != b'M' || b[3] != b'/' || b[6] != b'/' || b[9] != b'/' {
            return Err(bad(text, "must look like Mxx/HH/LL/name"));
        }
        let store_path = upper_hex_byte(&b[1..3]).ok_or_else(|| bad(text, "bad store path Mxx"))?;
        let hh = upper_hex_byte(&b[4..6]).ok_or_else(|| bad(text, "bad HH directory"))?;
        let ll = upper_hex_byte(&b[7..9]).ok_or_else(|| bad(text, "bad LL directory"))?;
        let name = &text[LOGIC_PATH_LEN..];
        if name.len() > MAX_NAME_LEN {
            return Err(bad(text, "name too long"));
        }
        if name.starts_with('.')
            || !name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            return Err(bad(text, "name has characters outside [A-Za-z0-9._-]"));
        }
        Ok(RemoteName {
            store_path,
            hh,
            ll,
            name: name.to_owned(),
        })
    }

    /// [`Self::parse`] for the name of a stored file: it must start with the encoded part
    /// (27 characters) every file name FastDFS gives has. So a trunk file's own name
    /// (`M00/00/00/000001`), which holds many small files, is no file to read, replace or
    /// delete.
    pub fn parse_file(text: &str) -> Result<Self, FileIdError> {
        let name = Self::parse(text)?;
        name.core()?;
        Ok(name)
    }

    /// Path of the file relative to its store path: `data/HH/LL/name`.
    pub fn relative_path(&self) -> String {
        format!("data/{:02X}/{:02X}/{}", self.hh, self.ll, self.name)
    }

    /// The decoded 20-byte core, when the name carries one.
    pub fn core(&self) -> Result<NameCore, FileIdError> {
        let chars = self
            .name
            .get(..BASE64_LEN)
            .ok_or_else(|| bad(&self.name, "no encoded part"))?;
        NameCore::decode(chars)
    }

    /// Length of the whole remote filename.
    pub fn len(&self) -> usize {
        LOGIC_PATH_LEN + self.name.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The slot of a file stored inside a trunk file: a 60-character name whose size
    /// field carries the trunk flag (a slave name of the same length does not).
    pub fn trunk_slot(&self) -> Option<TrunkSlot> {
        if self.len() != TRUNK_REMOTE_LEN || !self.core().ok()?.is_trunk() {
            return None;
        }
        TrunkSlot::decode(&self.name[BASE64_LEN..BASE64_LEN + TrunkSlot::ENCODED_LEN]).ok()
    }

    /// The formatted extension: the name's last 7 characters.
    pub fn formatted_ext(&self) -> &str {
        &self.name[self.name.len().saturating_sub(FORMATTED_EXT_LEN)..]
    }

    /// Slave files have longer names than their master (protocol notes §4.3).
    pub fn is_slave(&self) -> Result<bool, FileIdError> {
        let len = self.len();
        Ok(len > TRUNK_REMOTE_LEN || (len > NORMAL_REMOTE_LEN && !self.core()?.is_trunk()))
    }
}

impl fmt::Display for RemoteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "M{:02X}/{:02X}/{:02X}/{}",
            self.store_path, self.hh, self.ll, self.name
        )
    }
}

/// Whether `group` is a name FastDFS accepts: 1–16 ASCII letters and digits.
pub fn valid_group(group: &str) -> bool {
    (1..=MAX_GROUP_LEN).contains(&group.len()) && group.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// A full file ID: group plus remote filename.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileId {
    pub group: String,
    pub remote: RemoteName,
}

impl FileId {
    pub fn parse(text: &str) -> Result<Self, FileIdError> {
        let (group, remote) = text
            .split_once('/')
            .ok_or_else(|| FileIdError::NoGroup(text.into()))?;
        if !valid_group(group) {
            return Err(FileIdError::BadGroup(group.into()));
        }
        Ok(FileId {
            group: group.to_owned(),
            remote: RemoteName::parse(remote)?,
        })
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group, self.remote)
    }
}

impl std::str::FromStr for FileId {
    type Err = FileIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(source: Source) -> NameCore {
        NameCore {
            source,
            timestamp: 1_700_000_000,
            size_field: (0x8012_3456u64 << 32) | 1234,
            crc32: crc32fast::hash(b"hello"),
        }
    }

    #[test]
    fn protocol_vector_ip_source() {
        let core = vector(Source::Ip(Ipv4Addr::new(192, 168, 1, 2)));
        assert_eq!(core.crc32, 0x3610_A686);
        assert_eq!(core.encode(), "wKgBAmVT8QCAEjRWAAAE0jYQpoY");
        assert_eq!(
            NameCore::decode("wKgBAmVT8QCAEjRWAAAE0jYQpoY").ok(),
            Some(core)
        );
        assert_eq!(core.file_size(), 1234);
    }

    #[test]
    fn protocol_vector_server_id_source() {
        let core = vector(Source::ServerId(100_001));
        assert_eq!(core.encode(), "oYYBAGVT8QCAEjRWAAAE0jYQpoY");
        assert_eq!(
            NameCore::decode("oYYBAGVT8QCAEjRWAAAE0jYQpoY").ok(),
            Some(core)
        );
    }

    #[test]
    fn recorded_name_decodes() {
        // From the V6.16.1 capture: 127.0.0.2, 100 bytes, crc 1573e516.
        let core = NameCore::decode("fwAAAmsHltmAfYkIAAAAZBVz5RY").expect("decodes");
        assert_eq!(core.source, Source::Ip(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(core.timestamp, 1_795_659_481);
        assert_eq!(core.size_field, 0x807d_8908_0000_0064);
        assert_eq!(core.file_size(), 100);
        assert_eq!(core.crc32, 0x1573_e516);
    }

    #[test]
    fn size_fields() {
        assert_eq!(normal_size_field(5, 0x7F_FFFF), 0x807F_FFFF_0000_0005);
        assert_eq!(normal_size_field(5 << 32, 1), 5 << 32);
        let a = appender_size_field(0);
        assert_eq!(a, 0x8000_0000_0000_0000 | APPENDER_FLAG);
    }

    #[test]
    fn formatted_ext() {
        let mut d = [1u8, 2, 3, 4, 5, 6, 7].into_iter().cycle();
        assert_eq!(format_ext("jpg", || d.next().unwrap_or(0)), "123.jpg");
        assert_eq!(format_ext("tar.gz", || 0), ".tar.gz");
        assert_eq!(format_ext("", || 9), "9999999");
        assert!(valid_ext("tar.gz") && !valid_ext("a/b") && !valid_ext("toolong"));
    }

    #[test]
    fn pjw_vector() {
        assert_eq!(pjw_hash(b"wKgBAmVT8QCAEjRWAAAE0jYQpoY"), 125_509_545);
        assert_eq!(
            hashed_subdirs("wKgBAmVT8QCAEjRWAAAE0jYQpoY", 256),
            (0x1F, 0xA9)
        );
    }

    #[test]
    fn remote_names_are_confined() {
        let ok = RemoteName::parse("M00/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt").expect("valid");
        assert_eq!(
            ok.relative_path(),
            "data/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt"
        );
        assert_eq!(
            ok.to_string(),
            "M00/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt"
        );
        for evil in [
            "M00/00/00/../../etc/passwd",
            "M00/00/00/..",
            "M00/0a/00/abc",
            "M00/00/00/a/b",
            "M00/00/00/a\0b",
            "X00/00/00/abc",
            "M00/00/00/",
            "M00/00/00/.hidden",
        ] {
            assert!(RemoteName::parse(evil).is_err(), "{evil:?} accepted");
        }
    }

    #[test]
    fn a_stored_files_name_starts_with_its_encoded_part() {
        for name in [
            "M00/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt",
            "M00/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt-m",
            "M00/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696_150x150.jpg",
        ] {
            assert!(RemoteName::parse_file(name).is_ok(), "{name:?} refused");
        }
        // A trunk file's own name, and others FastDFS never gives a file.
        for name in [
            "M00/00/00/000001",
            "M00/00/00/abc",
            "M00/00/00/fwAAAmsHltmAfYk",
        ] {
            assert!(RemoteName::parse(name).is_ok(), "{name:?} is well-formed");
            assert!(RemoteName::parse_file(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn file_ids() {
        let id =
            FileId::parse("group1/M00/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt").expect("valid");
        assert_eq!(id.group, "group1");
        assert!(FileId::parse("M00/00/00/abc").is_err());
        assert!(FileId::parse("g/../M00/00/00/abc").is_err());
        assert!(FileId::parse("group12345678901234/M00/00/00/abcdef").is_err());
    }
}
