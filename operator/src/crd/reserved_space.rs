//! FastDFS's `reserved_storage_space`: the free space a storage keeps back from uploads.

use std::{fmt, str::FromStr};

use crate::Error;

/// Schema pattern for `settings.reservedStorageSpace`.
///
/// Either a ratio with up to two decimals (`10%`, `12.5%`) or a whole size of at most nine digits
/// with a binary unit (`1024M`, `1024MB`, `10G`), so that the byte count fits in 64 bits. FastDFS
/// reads a bare number as bytes, which is almost never what is meant, so a unit is required here.
/// [`ReservedSpace::from_str`] accepts exactly these strings.
pub const RESERVED_STORAGE_SPACE_PATTERN: &str =
    r"^([0-9]{1,2}(\.[0-9]{1,2})?%|[0-9]{1,9}[GgMmKk][Bb]?)$";

/// A parsed `reservedStorageSpace` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservedSpace {
    /// A share of each store path's capacity, in hundredths of a percent (`1250` is 12.5%).
    Ratio {
        /// Hundredths of a percent, below 10 000.
        basis_points: u16,
    },
    /// An absolute amount for the whole storage, in bytes.
    Absolute {
        /// Bytes kept free.
        bytes: u64,
    },
}

impl FromStr for ReservedSpace {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = || Error::InvalidReservedSpace {
            value: value.to_owned(),
        };
        if let Some(ratio) = value.strip_suffix('%') {
            let (whole, fraction) = match ratio.split_once('.') {
                Some((whole, fraction)) if is_digits(fraction, 1, 2) => (whole, fraction),
                Some(_) => return Err(invalid()),
                None => (ratio, ""),
            };
            if !is_digits(whole, 1, 2) {
                return Err(invalid());
            }
            let whole: u16 = whole.parse().map_err(|_| invalid())?;
            // "5" after the point means 50 hundredths, "05" means 5.
            let fraction: u16 = match fraction.len() {
                0 => 0,
                1 => fraction.parse::<u16>().map_err(|_| invalid())? * 10,
                _ => fraction.parse().map_err(|_| invalid())?,
            };
            return Ok(Self::Ratio {
                basis_points: whole * 100 + fraction,
            });
        }

        let without_b = value
            .strip_suffix(['B', 'b'])
            .filter(|rest| rest.ends_with(['G', 'g', 'M', 'm', 'K', 'k']))
            .unwrap_or(value);
        let (number, unit) = match without_b.char_indices().last() {
            Some((at, unit)) => (&without_b[..at], unit),
            None => return Err(invalid()),
        };
        let multiplier: u64 = match unit {
            'G' | 'g' => 1 << 30,
            'M' | 'm' => 1 << 20,
            'K' | 'k' => 1 << 10,
            _ => return Err(invalid()),
        };
        if !is_digits(number, 1, 9) {
            return Err(invalid());
        }
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let bytes = number.checked_mul(multiplier).ok_or_else(invalid)?;
        Ok(Self::Absolute { bytes })
    }
}

/// Renders the value the way FastDFS's configuration files write it (`12.50%`, `10G`, `1536M`).
impl fmt::Display for ReservedSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Ratio { basis_points } => {
                write!(f, "{}.{:02}%", basis_points / 100, basis_points % 100)
            }
            Self::Absolute { bytes } => {
                for (unit, size) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
                    if bytes % size == 0 {
                        return write!(f, "{}{unit}", bytes / size);
                    }
                }
                // Unreachable from parsed input, which is always a whole number of KiB.
                write!(f, "{bytes}")
            }
        }
    }
}

fn is_digits(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[(&str, ReservedSpace)] = &[
        ("10%", ReservedSpace::Ratio { basis_points: 1000 }),
        ("0%", ReservedSpace::Ratio { basis_points: 0 }),
        ("12.5%", ReservedSpace::Ratio { basis_points: 1250 }),
        ("12.05%", ReservedSpace::Ratio { basis_points: 1205 }),
        ("99.99%", ReservedSpace::Ratio { basis_points: 9999 }),
        ("1024MB", ReservedSpace::Absolute { bytes: 1 << 30 }),
        ("1024M", ReservedSpace::Absolute { bytes: 1 << 30 }),
        ("10g", ReservedSpace::Absolute { bytes: 10 << 30 }),
        ("512kb", ReservedSpace::Absolute { bytes: 512 << 10 }),
        ("0G", ReservedSpace::Absolute { bytes: 0 }),
    ];

    const INVALID: &[&str] = &[
        "",
        "%",
        "100%",
        "1000%",
        "10.%",
        ".5%",
        "10.123%",
        "-1%",
        "10 %",
        "1024",
        "1024B",
        "MB",
        "10T",
        "10GiB",
        "1.5G",
        "+10G",
        "10%%",
        " 10%",
        "10G ",
        "1234567890M",
    ];

    #[test]
    fn parses_ratios_and_sizes() {
        for (text, expected) in VALID {
            assert_eq!(
                text.parse::<ReservedSpace>().ok(),
                Some(*expected),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_malformed_values() {
        for text in INVALID {
            assert!(
                text.parse::<ReservedSpace>().is_err(),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn schema_pattern_agrees_with_parser() {
        let pattern = regex::Regex::new(RESERVED_STORAGE_SPACE_PATTERN).expect("pattern compiles");
        for (text, _) in VALID {
            assert!(pattern.is_match(text), "pattern rejects {text:?}");
        }
        for text in INVALID {
            assert!(!pattern.is_match(text), "pattern accepts {text:?}");
        }
    }

    /// The node reads every value the operator accepts, and what the operator renders into
    /// `storage.conf`, as the same amount (in whole MB, as FastDFS keeps it).
    #[test]
    fn the_node_reads_what_the_operator_accepts_and_renders_alike() {
        use fdfs_node::config::ReservedSpace as NodeReserved;
        for (text, parsed) in VALID {
            let rendered = parsed.to_string();
            for form in [*text, rendered.as_str()] {
                let node = NodeReserved::parse(form).expect("the node reads it");
                match (*parsed, node) {
                    (ReservedSpace::Ratio { basis_points }, NodeReserved::Ratio(r)) => {
                        assert!(
                            (r - f64::from(basis_points) / 10_000.0).abs() < 1e-9,
                            "{form}"
                        )
                    }
                    (ReservedSpace::Absolute { bytes }, NodeReserved::Mb(mb)) => {
                        assert_eq!(mb, bytes >> 20, "{form}")
                    }
                    (ours, theirs) => panic!("{form}: {ours:?} read as {theirs:?}"),
                }
            }
        }
    }

    #[test]
    fn renders_fastdfs_text() {
        let rendered: Vec<String> = ["10%", "12.5%", "1024MB", "1536m", "3k"]
            .iter()
            .map(|text| text.parse::<ReservedSpace>().expect("valid").to_string())
            .collect();
        assert_eq!(rendered, ["10.00%", "12.50%", "1G", "1536M", "3K"]);
    }
}
