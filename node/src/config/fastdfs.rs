//! FastDFS's own config files (`tracker.conf`, `storage.conf`, `client.conf`) read into
//! the typed configuration, for the keys we implement.

use std::path::{Path, PathBuf};

use super::*;

/// Keys of FastDFS's conf files we accept and ignore (not implemented, or meaningless here).
const IGNORED_FASTDFS_KEYS: &[&str] = &[
    "disabled",
    "work_threads",
    "accept_threads",
    "min_buff_size",
    "thread_stack_size",
    "log_level",
    "run_by_group",
    "run_by_user",
    "sync_log_buff_interval",
    "trunk_free_space_merge",
    "delete_unused_trunk_files",
    "trunk_init_reload_from_binlog",
    "trunk_binlog_max_backups",
    "store_slave_file_use_link",
    "rotate_error_log",
    "error_log_rotate_time",
    "compress_old_error_log",
    "compress_error_log_days_before",
    "rotate_error_log_size",
    "log_file_keep_days",
    "use_connection_pool",
    "connection_pool_max_idle_time",
    "http.server_port",
    "http.check_alive_interval",
    "http.check_alive_type",
    "http.check_alive_uri",
    "storage_ip_changed_auto_adjust",
    "sync_log_buff_interval",
    "thread_stack_size",
    "response_ip_addr_size",
    "address_family",
    "connect_timeout",
    "client_bind",
    "disk_rw_separated",
    "disk_reader_threads",
    "disk_writer_threads",
    "sync_interval",
    "sync_start_time",
    "sync_end_time",
    "write_mark_file_freq",
    "sync_min_threads",
    "sync_max_threads",
    "sync_binlog_buff_interval",
    "check_file_duplicate",
    "file_signature_method",
    "key_namespace",
    "keep_alive",
    "compress_binlog",
    "compress_binlog_time",
    "check_store_path_mark",
    "disk_recovery_threads",
    "file_sync_skip_invalid_record",
    "if_alias_prefix",
    "use_access_log",
    "rotate_access_log",
    "access_log_rotate_time",
    "compress_old_access_log",
    "compress_access_log_days_before",
    "rotate_access_log_size",
    "use_io_uring",
    "use_send_zc",
    "log_file_rotate_everyday",
    "log_file_rotate_time",
    "log_file_compress_old",
    "log_file_compress_days_before",
    "log_file_rotate_on_size",
    "log_file_delete_old_time",
    "bind_addr",
    "store_path_count",
    "tracker_server",
    "load_fdfs_parameters_from_tracker",
    "connect_first_by",
    "http.anti_steal.check_token",
    "http.anti_steal.secret_key",
    "http.tracker_server_port",
    "http.domain_name",
    "max_connections",
    "network_timeout",
    "base_path",
    "port",
    "buff_size",
    "group_name",
    "subdir_count_per_path",
    "heart_beat_interval",
    "stat_report_interval",
    "upload_priority",
    "file_distribute_path_mode",
    "file_distribute_rotate_count",
    "store_lookup",
    "store_group",
    "store_server",
    "store_path",
    "download_server",
    "reserved_storage_space",
    "check_active_interval",
    "storage_sync_file_max_delay",
    "storage_sync_file_max_time",
    "max_buff_size",
];

/// One `key = value` line of a FastDFS conf file.
#[derive(Debug, Clone)]
pub struct ConfLine {
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// What FastDFS takes for these settings when they are 0 or less.
const FASTDFS_CHECK_ACTIVE_INTERVAL: u64 = 100;
const FASTDFS_NETWORK_TIMEOUT: u64 = 30;
const FASTDFS_HEART_BEAT_INTERVAL: u64 = 30;

/// A number of seconds; 0 or less is FastDFS's default for it, as FastDFS takes it (a 0
/// would make every storage OFFLINE a second after each beat, or every call time out).
fn positive_or(path: &Path, l: &ConfLine, default: u64) -> Result<u64, ConfigError> {
    Ok(match parse_num::<i64>(path, l)? {
        n if n > 0 => n as u64,
        _ => default,
    })
}

/// A `tracker_server` value: one address. FastDFS 6.11+ also takes `host1,host2:port`,
/// two addresses of one tracker, which this build does not: refused with a clear message
/// rather than failing to resolve later.
fn one_tracker_address(path: &Path, l: &ConfLine) -> Result<String, ConfigError> {
    if l.value.contains(',') {
        return Err(bad(
            path,
            l,
            "several addresses for one tracker are not supported: give one (host:port)".into(),
        ));
    }
    Ok(l.value.clone())
}

/// What FastDFS takes for a `sync_wait_msec` of 0 or less.
const FASTDFS_SYNC_WAIT_MSEC: u64 = 100;

/// Sections of FastDFS's sample confs (V6.13+) that hold only logging settings.
const IGNORED_FASTDFS_SECTIONS: &[&str] = &["error-log", "access-log"];

/// How deep `#include`s may nest (a file including itself ends there).
const MAX_INCLUDE_DEPTH: usize = 8;

/// Reads FastDFS's INI-like format: `key = value`, `#` comments, `#include <file>` (as
/// libfastcommon: `#include` then a space or tab, the file relative to the including one;
/// its lines count as the `#include` line's). A key after a `[section]` line belongs to that
/// section and is named `section.key` (FastDFS reads only the global keys for its settings,
/// so a `tracker_server` line under `[access-log]` is not a tracker).
pub fn read_fastdfs_conf(path: &Path) -> Result<Vec<ConfLine>, ConfigError> {
    let mut out = Vec::new();
    read_into(path, 0, None, &mut out)?;
    Ok(out)
}

fn read_into(
    path: &Path,
    depth: usize,
    included_at: Option<usize>,
    out: &mut Vec<ConfLine>,
) -> Result<(), ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    // Comments in other encodings (GBK in many deployments) do not stop the read: every
    // key and value FastDFS defines is ASCII.
    let text = String::from_utf8_lossy(&bytes);
    let mut section: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        let line = included_at.unwrap_or(i + 1);
        if let Some(file) = l
            .strip_prefix("#include")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map(str::trim)
        {
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(ConfigError::BadValue {
                    path: path.into(),
                    line,
                    key: "#include".into(),
                    value: file.into(),
                    reason: format!("includes nest deeper than {MAX_INCLUDE_DEPTH}"),
                });
            }
            let included = path.parent().unwrap_or(Path::new(".")).join(file);
            read_into(&included, depth + 1, Some(line), out)?;
            continue;
        }
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            section = Some(name.trim().to_owned());
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            return Err(ConfigError::BadValue {
                path: path.into(),
                line: i + 1,
                key: l.into(),
                value: String::new(),
                reason: "expected key = value".into(),
            });
        };
        out.push(ConfLine {
            line,
            key: match &section {
                Some(name) => format!("{name}.{}", k.trim()),
                None => k.trim().to_owned(),
            },
            value: v.trim().to_owned(),
        });
    }
    Ok(())
}

fn parse_num<T: std::str::FromStr>(path: &Path, l: &ConfLine) -> Result<T, ConfigError> {
    l.value.parse().map_err(|_| ConfigError::BadValue {
        path: path.into(),
        line: l.line,
        key: l.key.clone(),
        value: l.value.clone(),
        reason: "not a number".into(),
    })
}

/// FastDFS booleans: true/false, yes/no, on/off, 1/0.
fn parse_bool(path: &Path, l: &ConfLine) -> Result<bool, ConfigError> {
    match l.value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(ConfigError::BadValue {
            path: path.into(),
            line: l.line,
            key: l.key.clone(),
            value: l.value.clone(),
            reason: "not a boolean".into(),
        }),
    }
}

/// A byte size that must fit the protocol's 32-bit trunk fields.
fn parse_u32_bytes(path: &Path, l: &ConfLine) -> Result<u32, ConfigError> {
    u32::try_from(parse_bytes(path, l)?).map_err(|_| ConfigError::BadValue {
        path: path.into(),
        line: l.line,
        key: l.key.clone(),
        value: l.value.clone(),
        reason: "must be below 4 GB".into(),
    })
}

/// A bad value of line `l`, for `reason`.
fn bad(path: &Path, l: &ConfLine, reason: String) -> ConfigError {
    ConfigError::BadValue {
        path: path.into(),
        line: l.line,
        key: l.key.clone(),
        value: l.value.clone(),
        reason,
    }
}

/// `HH:MM`, as FastDFS's schedule keys take it.
fn time_of_day(path: &Path, l: &ConfLine) -> Result<TimeOfDay, ConfigError> {
    TimeOfDay::parse(&l.value).map_err(|reason| ConfigError::BadValue {
        path: path.into(),
        line: l.line,
        key: l.key.clone(),
        value: l.value.clone(),
        reason,
    })
}

/// Parses sizes like `256KB`, `1MB`, `4096`.
fn parse_bytes(path: &Path, l: &ConfLine) -> Result<u64, ConfigError> {
    let upper = l.value.to_ascii_uppercase();
    let digits = upper.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let mult = match &upper[digits.len()..] {
        "" | "B" => 1,
        "K" | "KB" => 1024,
        "M" | "MB" => 1024 * 1024,
        "G" | "GB" => 1024 * 1024 * 1024,
        _ => 0,
    };
    match digits.trim().parse::<u64>() {
        Ok(n) if mult > 0 => n
            .checked_mul(mult)
            .ok_or_else(|| bad(path, l, "too large".into())),
        _ => Err(bad(path, l, "not a size".into())),
    }
}

fn unknown_or_ignored(path: &Path, l: &ConfLine) -> Result<(), ConfigError> {
    let base = l.key.trim_end_matches(|c: char| c.is_ascii_digit());
    let in_ignored_section = l
        .key
        .split_once('.')
        .is_some_and(|(section, _)| IGNORED_FASTDFS_SECTIONS.contains(&section));
    if IGNORED_FASTDFS_KEYS.contains(&l.key.as_str())
        || in_ignored_section
        || base == "store_path"
        || (base.starts_with("store_path") && base.ends_with("_readonly"))
    {
        tracing::warn!(key = %l.key, file = %path.display(), "FastDFS setting not implemented; ignored");
        Ok(())
    } else {
        Err(ConfigError::UnknownKey {
            path: path.into(),
            line: l.line,
            key: l.key.clone(),
        })
    }
}

fn reserved(path: &Path, l: &ConfLine) -> Result<ReservedSpace, ConfigError> {
    ReservedSpace::parse(&l.value).map_err(|reason| ConfigError::BadValue {
        path: path.into(),
        line: l.line,
        key: l.key.clone(),
        value: l.value.clone(),
        reason,
    })
}

/// Builds a tracker config from FastDFS's `tracker.conf`.
pub fn tracker_from_fastdfs(path: &Path) -> Result<TrackerConfig, ConfigError> {
    let mut c = TrackerConfig::default();
    let mut bind_ip = "0.0.0.0".to_owned();
    let mut port = 22122u16;
    let mut http_port: Option<u16> = None;
    for l in read_fastdfs_conf(path)? {
        match l.key.as_str() {
            "bind_addr" if !l.value.is_empty() => bind_ip = l.value.clone(),
            "port" => port = parse_num(path, &l)?,
            "base_path" => c.base_path = PathBuf::from(&l.value),
            "store_lookup" => c.store_lookup = parse_num(path, &l)?,
            "store_group" => c.store_group = l.value.clone(),
            "store_server" => c.store_server = parse_num(path, &l)?,
            "store_path" => c.store_path = parse_num(path, &l)?,
            "download_server" => c.download_server = parse_num(path, &l)?,
            "reserved_storage_space" => c.reserved_storage_space = reserved(path, &l)?,
            "check_active_interval" => {
                c.check_active_interval = positive_or(path, &l, FASTDFS_CHECK_ACTIVE_INTERVAL)?
            }
            "storage_sync_file_max_delay" => c.storage_sync_file_max_delay = parse_num(path, &l)?,
            "storage_sync_file_max_time" => c.storage_sync_file_max_time = parse_num(path, &l)?,
            "max_connections" => c.max_connections = parse_num(path, &l)?,
            "network_timeout" => {
                c.network_timeout = positive_or(path, &l, FASTDFS_NETWORK_TIMEOUT)?;
                c.header_timeout = c.network_timeout;
            }
            "max_buff_size" => c.max_body_len = parse_bytes(path, &l)?,
            "allow_hosts" => c.allow_hosts.push(l.value.clone()),
            "use_trunk_file" => c.trunk.use_trunk_file = parse_bool(path, &l)?,
            "slot_min_size" => c.trunk.slot_min_size = parse_u32_bytes(path, &l)?,
            "slot_max_size" => c.trunk.slot_max_size = parse_u32_bytes(path, &l)?,
            "trunk_alloc_alignment_size" => {
                c.trunk.trunk_alloc_alignment_size = parse_u32_bytes(path, &l)?;
            }
            "trunk_file_size" => c.trunk.trunk_file_size = parse_u32_bytes(path, &l)?,
            "trunk_create_file_advance" => {
                c.trunk.trunk_create_file_advance = parse_bool(path, &l)?;
            }
            "trunk_create_file_time_base" => {
                c.trunk.trunk_create_file_time_base = time_of_day(path, &l)?;
            }
            "trunk_create_file_interval" => {
                c.trunk.trunk_create_file_interval = parse_num(path, &l)?;
            }
            "trunk_create_file_space_threshold" => {
                c.trunk.trunk_create_file_space_threshold = parse_bytes(path, &l)?;
            }
            "trunk_init_check_occupying" => {
                c.trunk.trunk_init_check_occupying = parse_bool(path, &l)?;
            }
            "trunk_compress_binlog_min_interval" => {
                c.trunk.trunk_compress_binlog_min_interval = parse_num(path, &l)?;
            }
            "trunk_compress_binlog_interval" => {
                c.trunk.trunk_compress_binlog_interval = parse_num(path, &l)?;
            }
            "trunk_compress_binlog_time_base" => {
                c.trunk.trunk_compress_binlog_time_base = time_of_day(path, &l)?;
            }
            "use_storage_id" => c.use_storage_id = parse_bool(path, &l)?,
            "trust_storage_server_id" => c.trust_storage_server_id = parse_bool(path, &l)?,
            "storage_ids_filename" => {
                let p = PathBuf::from(&l.value);
                // FastDFS reads a relative name next to tracker.conf.
                c.storage_ids_filename = match path.parent() {
                    Some(dir) if p.is_relative() => dir.join(p),
                    _ => p,
                };
            }
            "id_type_in_filename" => {
                c.id_type_in_filename = match l.value.as_str() {
                    "ip" => IdType::Ip,
                    "id" => IdType::Id,
                    _ => {
                        return Err(ConfigError::BadValue {
                            path: path.into(),
                            line: l.line,
                            key: l.key.clone(),
                            value: l.value.clone(),
                            reason: "ip or id".into(),
                        });
                    }
                }
            }
            "http.server_port" => {
                let p: u16 = parse_num(path, &l)?;
                http_port = Some(p);
            }
            "fetch_all_format" => {
                c.compat.fetch_all_format = match l.value.as_str() {
                    "v6.16" => FetchAllFormat::V616,
                    "legacy" => FetchAllFormat::Legacy,
                    _ => {
                        return Err(ConfigError::BadValue {
                            path: path.into(),
                            line: l.line,
                            key: l.key.clone(),
                            value: l.value.clone(),
                            reason: "v6.16 or legacy".into(),
                        });
                    }
                }
            }
            "response_ip_addr_size" => {
                // FastDFS: only `auto` gives 15-byte fields; anything else gives 45.
                c.compat.ip_width = if l.value.eq_ignore_ascii_case("auto") {
                    IpWidth::V4
                } else {
                    IpWidth::V6
                };
            }
            _ => unknown_or_ignored(path, &l)?,
        }
    }
    if let Some(p) = http_port {
        c.http_bind = format!("{bind_ip}:{p}");
    }
    c.bind = format!("{bind_ip}:{port}");
    c.trunk = c.trunk.normalized()?;
    c.validate()?;
    Ok(c)
}

/// The store paths as FastDFS takes them: `store_path0` to `store_path<count - 1>`
/// (`store_path_count`, 1 by default), `store_path0` defaulting to `base_path` (an empty
/// list here). A missing one below the count is an error; one at or past it is not used.
/// Their indices are the `Mxx` of file names: they are never renumbered.
fn store_paths(
    path: &Path,
    mut given: std::collections::BTreeMap<usize, (PathBuf, usize)>,
    count: Option<(usize, usize)>,
) -> Result<Vec<PathBuf>, ConfigError> {
    let (count, count_line) = count.unwrap_or((1, 0));
    for (index, (_, line)) in given.range(count..) {
        tracing::warn!(conf = %path.display(), line, index, count,
            "store_path{index} is past store_path_count; not used");
    }
    if count == 1 && !given.contains_key(&0) {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        match given.remove(&index) {
            Some((p, _)) => out.push(p),
            None if index == 0 => {
                return Err(ConfigError::BadValue {
                    path: path.into(),
                    line: count_line,
                    key: "store_path0".into(),
                    value: String::new(),
                    reason: "needed with several store paths (FastDFS would use base_path)".into(),
                });
            }
            None => {
                return Err(ConfigError::BadValue {
                    path: path.into(),
                    line: count_line,
                    key: format!("store_path{index}"),
                    value: String::new(),
                    reason: format!("missing: store_path_count is {count}"),
                });
            }
        }
    }
    Ok(out)
}

/// Builds a storage config from FastDFS's `storage.conf`.
pub fn storage_from_fastdfs(path: &Path) -> Result<StorageConfig, ConfigError> {
    let mut c = StorageConfig::default();
    let mut bind_ip = "0.0.0.0".to_owned();
    let mut port = 23000u16;
    let mut http_port: Option<u16> = None;
    let mut paths: std::collections::BTreeMap<usize, (PathBuf, usize)> = Default::default();
    let mut path_count: Option<(usize, usize)> = None;
    for l in read_fastdfs_conf(path)? {
        let store_index = l
            .key
            .strip_prefix("store_path")
            .and_then(|n| n.parse::<usize>().ok());
        match l.key.as_str() {
            // The storage learns these from the tracker (PARAMETER_REQ); accepted for
            // configs that repeat the tracker's settings.
            "use_storage_id"
            | "storage_ids_filename"
            | "id_type_in_filename"
            | "trust_storage_server_id" => {}
            "http.server_port" => http_port = Some(parse_num(path, &l)?),
            "http.anti_steal.check_token" => c.http.check_token = parse_bool(path, &l)?,
            "http.anti_steal.secret_key" => c.http.secret_key = l.value.clone(),
            "http.anti_steal.token_ttl" => c.http.token_ttl = parse_num(path, &l)?,
            // This project's HTTP keys (thumbnails, the small-file memory).
            "http.thumbnail_preset" => {
                let preset =
                    ThumbnailPreset::parse(&l.value).map_err(|reason| ConfigError::BadValue {
                        path: path.into(),
                        line: l.line,
                        key: l.key.clone(),
                        value: l.value.clone(),
                        reason,
                    })?;
                c.http.thumbnails.presets.push(preset);
            }
            "http.thumbnail_max_source_pixels" => {
                c.http.thumbnails.max_source_pixels = parse_num(path, &l)?
            }
            "http.thumbnail_max_concurrent" => {
                c.http.thumbnails.max_concurrent = parse_num(path, &l)?
            }
            "http.cache_bytes" => c.http.cache_bytes = parse_bytes(path, &l)?,
            "http.cache_max_file" => c.http.cache_max_file = parse_bytes(path, &l)?,
            "bind_addr" if !l.value.is_empty() => bind_ip = l.value.clone(),
            "port" => port = parse_num(path, &l)?,
            "group_name" => c.group_name = l.value.clone(),
            "base_path" => c.base_path = PathBuf::from(&l.value),
            "subdir_count_per_path" => c.subdir_count_per_path = parse_num(path, &l)?,
            "tracker_server" => c.tracker_servers.push(one_tracker_address(path, &l)?),
            "heart_beat_interval" => {
                c.heart_beat_interval = positive_or(path, &l, FASTDFS_HEART_BEAT_INTERVAL)?
            }
            "stat_report_interval" => c.stat_report_interval = parse_num(path, &l)?,
            "sync_stat_file_interval" => c.sync_stat_file_interval = parse_num(path, &l)?,
            "buff_size" => c.buff_size = parse_bytes(path, &l)?,
            "fsync_after_written_bytes" => c.fsync_after_written_bytes = parse_bytes(path, &l)?,
            // FastDFS takes a value of 0 or less as its default.
            "sync_wait_msec" => {
                c.sync_wait_msec = match parse_num::<i64>(path, &l)? {
                    ms if ms > 0 => ms as u64,
                    _ => FASTDFS_SYNC_WAIT_MSEC,
                }
            }
            "file_distribute_path_mode" => c.file_distribute_path_mode = parse_num(path, &l)?,
            "file_distribute_rotate_count" => c.file_distribute_rotate_count = parse_num(path, &l)?,
            "upload_priority" => c.upload_priority = parse_num(path, &l)?,
            "max_connections" => c.max_connections = parse_num(path, &l)?,
            "network_timeout" => {
                c.network_timeout = positive_or(path, &l, FASTDFS_NETWORK_TIMEOUT)?;
                c.header_timeout = c.network_timeout;
            }
            "connect_timeout" => c.connect_timeout = parse_num(path, &l)?,
            "allow_hosts" => c.allow_hosts.push(l.value.clone()),
            k if k.starts_with("store_path") && k.ends_with("_readonly") => {
                let index = k
                    .trim_start_matches("store_path")
                    .trim_end_matches("_readonly")
                    .parse::<usize>();
                match (index, l.value.as_str()) {
                    (Ok(i), "true" | "1" | "yes" | "on") => c.readonly_store_paths.push(i),
                    (Ok(_), "false" | "0" | "no" | "off") => {}
                    _ => {
                        return Err(ConfigError::BadValue {
                            path: path.into(),
                            line: l.line,
                            key: l.key.clone(),
                            value: l.value.clone(),
                            reason: "expected a store path index and true/false".into(),
                        });
                    }
                }
            }
            "server_id" => c.server_id = l.value.clone(),
            "store_path_count" => match parse_num::<usize>(path, &l)? {
                0 => return Err(bad(path, &l, "must be 1 or more".into())),
                n => path_count = Some((n, l.line)),
            },
            _ if store_index.is_some() => {
                let index = store_index.unwrap_or(0);
                if paths
                    .insert(index, (PathBuf::from(&l.value), l.line))
                    .is_some()
                {
                    return Err(bad(path, &l, "given twice".into()));
                }
            }
            _ => unknown_or_ignored(path, &l)?,
        }
    }
    c.store_paths = store_paths(path, paths, path_count)?;
    if let Some(p) = http_port {
        c.http.bind = format!("{bind_ip}:{p}");
    }
    // Secrets come from the environment rather than a file when set (Kubernetes Secrets).
    if let Ok(key) = std::env::var("FDFS_HTTP_SECRET_KEY") {
        c.http.secret_key = key;
    }
    c.bind = format!("{bind_ip}:{port}");
    c.validate()?;
    Ok(c)
}

/// The `tracker_server` lines of a FastDFS `client.conf`.
pub fn trackers_from_client_conf(path: &Path) -> Result<Vec<String>, ConfigError> {
    let lines = read_fastdfs_conf(path)?;
    let trackers: Vec<String> = lines
        .iter()
        .filter(|l| l.key == "tracker_server")
        .map(|l| one_tracker_address(path, l))
        .collect::<Result<_, _>>()?;
    if trackers.is_empty() {
        return Err(ConfigError::Invalid {
            key: "tracker_server",
            reason: format!("none in {}", path.display()),
        });
    }
    Ok(trackers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The active lines of FastDFS V6.16.1's sample `tracker.conf` (comments dropped).
    const V6_16_SAMPLE_TRACKER: &str = concat!(
        "disabled = false\n",
        "bind_addr =\n",
        "port = 22122\n",
        "address_family = auto\n",
        "response_ip_addr_size = auto\n",
        "connect_timeout = 5\n",
        "network_timeout = 60\n",
        "use_io_uring = false\n",
        "use_send_zc = true\n",
        "base_path = /opt/fastdfs\n",
        "max_connections = 1024\n",
        "accept_threads = 1\n",
        "work_threads = 4\n",
        "min_buff_size = 8KB\n",
        "max_buff_size = 128KB\n",
        "store_lookup = 2\n",
        "store_group = group2\n",
        "store_server = 0\n",
        "store_path = 0\n",
        "download_server = 0\n",
        "reserved_storage_space = 20%\n",
        "log_level = info\n",
        "run_by_group=\n",
        "run_by_user =\n",
        "allow_hosts = *\n",
        "check_active_interval = 120\n",
        "thread_stack_size = 256KB\n",
        "storage_ip_changed_auto_adjust = true\n",
        "storage_sync_file_max_delay = 86400\n",
        "storage_sync_file_max_time = 300\n",
        "use_trunk_file = false\n",
        "slot_min_size = 256\n",
        "slot_max_size = 1MB\n",
        "trunk_alloc_alignment_size = 256\n",
        "trunk_free_space_merge = true\n",
        "delete_unused_trunk_files = false\n",
        "trunk_file_size = 64MB\n",
        "trunk_create_file_advance = false\n",
        "trunk_create_file_time_base = 02:00\n",
        "trunk_create_file_interval = 86400\n",
        "trunk_create_file_space_threshold = 20G\n",
        "trunk_init_check_occupying = false\n",
        "trunk_init_reload_from_binlog = false\n",
        "trunk_compress_binlog_min_interval = 86400\n",
        "trunk_compress_binlog_interval = 86400\n",
        "trunk_compress_binlog_time_base = 03:00\n",
        "trunk_binlog_max_backups = 7\n",
        "use_storage_id = false\n",
        "storage_ids_filename = storage_ids.conf\n",
        "id_type_in_filename = id\n",
        "trust_storage_server_id = true\n",
        "store_slave_file_use_link = false\n",
        "use_connection_pool = true\n",
        "connection_pool_max_idle_time = 3600\n",
        "sync_log_buff_interval = 1\n",
        "log_file_rotate_everyday = true\n",
        "log_file_rotate_time = 00:00\n",
        "log_file_compress_old = false\n",
        "log_file_compress_days_before = 7\n",
        "log_file_rotate_on_size = 0\n",
        "log_file_keep_days = 15\n",
        "log_file_delete_old_time = 01:30\n",
        "[error-log]\n",
    );

    /// The active lines of FastDFS V6.16.1's sample `storage.conf` (comments dropped).
    const V6_16_SAMPLE_STORAGE: &str = concat!(
        "disabled = false\n",
        "group_name = group1\n",
        "bind_addr =\n",
        "client_bind = true\n",
        "port = 23000\n",
        "address_family = auto\n",
        "connect_timeout = 5\n",
        "network_timeout = 60\n",
        "use_io_uring = false\n",
        "use_send_zc = true\n",
        "heart_beat_interval = 30\n",
        "stat_report_interval = 60\n",
        "base_path = /opt/fastdfs\n",
        "max_connections = 1024\n",
        "buff_size = 256KB\n",
        "accept_threads = 1\n",
        "work_threads = 4\n",
        "disk_rw_separated = true\n",
        "disk_reader_threads = 2\n",
        "disk_writer_threads = 1\n",
        "sync_min_threads = 1\n",
        "sync_max_threads = auto\n",
        "sync_wait_msec = 10\n",
        "sync_interval = 0\n",
        "sync_start_time = 00:00\n",
        "sync_end_time = 23:59\n",
        "write_mark_file_freq = 500\n",
        "disk_recovery_threads = 4\n",
        "store_path_count = 1\n",
        "store_path0 = /opt/fastdfs\n",
        "subdir_count_per_path = 256\n",
        "tracker_server = 192.168.209.121:22122\n",
        "tracker_server = 192.168.209.122:22122\n",
        "log_level = info\n",
        "run_by_group =\n",
        "run_by_user =\n",
        "allow_hosts = *\n",
        "file_distribute_path_mode = 0\n",
        "file_distribute_rotate_count = 100\n",
        "fsync_after_written_bytes = 0\n",
        "sync_binlog_buff_interval = 1\n",
        "sync_stat_file_interval = 60\n",
        "thread_stack_size = 512KB\n",
        "upload_priority = 10\n",
        "if_alias_prefix =\n",
        "check_file_duplicate = 0\n",
        "file_signature_method = hash\n",
        "key_namespace = FastDFS\n",
        "keep_alive = 0\n",
        "file_sync_skip_invalid_record = false\n",
        "use_connection_pool = true\n",
        "connection_pool_max_idle_time = 3600\n",
        "compress_binlog = true\n",
        "compress_binlog_time = 01:30\n",
        "check_store_path_mark = true\n",
        "sync_log_buff_interval = 1\n",
        "log_file_rotate_everyday = true\n",
        "log_file_rotate_time = 00:00\n",
        "log_file_compress_old = false\n",
        "log_file_compress_days_before = 7\n",
        "log_file_rotate_on_size = 0\n",
        "log_file_keep_days = 15\n",
        "log_file_delete_old_time = 01:30\n",
        "[error-log]\n",
        "[access-log]\n",
        "enabled = false\n",
        "time_precision = us\n",
    );

    #[test]
    fn fastdfs_v6_16_sample_confs_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = dir.path().join("tracker.conf");
        std::fs::write(&t, V6_16_SAMPLE_TRACKER).expect("write");
        let c = tracker_from_fastdfs(&t).expect("the sample tracker.conf loads");
        assert_eq!(c.bind, "0.0.0.0:22122");
        assert_eq!(c.store_lookup, 2);
        // The conf's network_timeout is the header deadline too; without a conf, 10 s.
        assert_eq!((c.network_timeout, c.header_timeout), (60, 60));
        assert_eq!(TrackerConfig::default().header_timeout, 10);
        assert_eq!(StorageConfig::default().header_timeout, 10);
        let s = dir.path().join("storage.conf");
        std::fs::write(&s, V6_16_SAMPLE_STORAGE).expect("write");
        let c = storage_from_fastdfs(&s).expect("the sample storage.conf loads");
        assert_eq!(c.bind, "0.0.0.0:23000");
        assert_eq!(c.timeouts().header, Duration::from_secs(60));
        assert_eq!(c.tracker_servers.len(), 2);
        assert_eq!(c.sync_wait_msec, 10);

        // Keys under a section are not global settings: FastDFS finds no tracker in
        // a tracker_server line placed after [access-log], and neither do we.
        let moved = V6_16_SAMPLE_STORAGE
            .lines()
            .filter(|l| !l.starts_with("tracker_server"))
            .chain(["tracker_server = 10.0.0.1:22122"])
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&s, moved).expect("write");
        assert!(storage_from_fastdfs(&s).is_ok_and(|c| c.tracker_servers.is_empty()));
        // Keys of other sections are unknown, named with their section.
        std::fs::write(&s, "port = 23000\n[extra]\nport = 1\n").expect("write");
        assert!(matches!(
            storage_from_fastdfs(&s),
            Err(ConfigError::UnknownKey { key, .. }) if key == "extra.port"
        ));
    }

    #[test]
    fn thumbnail_and_cache_keys_in_a_storage_conf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = dir.path().join("storage.conf");
        let conf = "base_path = /data\nstore_path0 = /data\n\
                    http.thumbnail_preset = _150x150 150x150 cover\n\
                    http.thumbnail_preset = _m 320X320\n\
                    http.thumbnail_max_source_pixels = 1000000\n\
                    http.thumbnail_max_concurrent = 3\n\
                    http.cache_bytes = 8MB\nhttp.cache_max_file = 16KB\n";
        std::fs::write(&s, conf).expect("write");
        let c = storage_from_fastdfs(&s).expect("loads");
        let t = &c.http.thumbnails;
        assert_eq!(
            t.presets,
            [
                ThumbnailPreset {
                    name: "_150x150".into(),
                    width: 150,
                    height: 150,
                    fit: Fit::Cover
                },
                ThumbnailPreset {
                    name: "_m".into(),
                    width: 320,
                    height: 320,
                    fit: Fit::Contain
                },
            ]
        );
        assert_eq!((t.max_source_pixels, t.max_concurrent), (1_000_000, 3));
        assert_eq!(
            (c.http.cache_bytes, c.http.cache_max_file),
            (8 << 20, 16 << 10)
        );
        for (bad, why) in [
            ("http.thumbnail_preset = _s 150\n", "no height"),
            (
                "http.thumbnail_preset = _s 150x150 stretch\n",
                "unknown fit",
            ),
            (
                "http.thumbnail_preset = ../x 150x150\n",
                "a name that is no slave prefix",
            ),
            ("http.thumbnail_preset = _s 0x150\n", "a zero side"),
            (
                "http.thumbnail_preset = _s 9000x150\n",
                "a side over the limit",
            ),
            (
                "http.thumbnail_preset = _s 150x150\nhttp.thumbnail_preset = _s 20x20\n",
                "a name twice",
            ),
        ] {
            std::fs::write(&s, format!("base_path = /data\n{bad}")).expect("write");
            assert!(storage_from_fastdfs(&s).is_err(), "{why}");
        }
    }

    #[test]
    fn fastdfs_storage_conf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("storage.conf");
        std::fs::write(
            &p,
            "# comment\ngroup_name = group2\nport=23001\nbase_path=/data/fdfs\nstore_path_count=2\n\
             store_path0=/d0\nstore_path1=/d1\ntracker_server = 10.0.0.1:22122\n\
             tracker_server = tracker.svc:22122\nbuff_size = 256KB\nlog_level = info\n",
        )
        .expect("write");
        let c = storage_from_fastdfs(&p).expect("loads");
        assert_eq!(c.group_name, "group2");
        assert_eq!(c.bind, "0.0.0.0:23001");
        assert_eq!(
            c.store_paths,
            vec![PathBuf::from("/d0"), PathBuf::from("/d1")]
        );
        assert_eq!(c.tracker_servers.len(), 2);
        assert_eq!(c.buff_size, 256 * 1024);
        assert_eq!(c.sync_wait_msec, StorageConfig::default().sync_wait_msec);
        for (value, ms) in [("250", 250), ("0", 100), ("-1", 100)] {
            std::fs::write(&p, format!("sync_wait_msec = {value}\n")).expect("write");
            assert_eq!(storage_from_fastdfs(&p).expect("loads").sync_wait_msec, ms);
        }

        std::fs::write(&p, "no_such_key = 1\n").expect("write");
        assert!(matches!(
            storage_from_fastdfs(&p),
            Err(ConfigError::UnknownKey { .. })
        ));
        std::fs::write(&p, "port = abc\n").expect("write");
        assert!(matches!(
            storage_from_fastdfs(&p),
            Err(ConfigError::BadValue { .. })
        ));
    }

    #[test]
    fn store_paths_keep_their_indices_as_store_path_count_says() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("storage.conf");
        let load = |text: &str| {
            std::fs::write(&p, format!("base_path = /base\n{text}")).expect("write");
            storage_from_fastdfs(&p)
        };
        // One path, none named: base_path.
        assert!(load("").expect("loads").store_paths.is_empty());
        // A leftover path past the count is not used (it would change the group's count).
        let c = load("store_path_count = 1\nstore_path0 = /d0\nstore_path1 = /d1\n").expect("ok");
        assert_eq!(c.store_paths, vec![PathBuf::from("/d0")]);
        // Indices are M00, M01...: a missing one is an error, never a renumbering.
        for text in [
            "store_path_count = 2\nstore_path1 = /d1\n",
            "store_path_count = 3\nstore_path0 = /d0\nstore_path2 = /d2\n",
            "store_path_count = 0\n",
            "store_path0 = /a\nstore_path0 = /b\n",
        ] {
            assert!(
                matches!(load(text), Err(ConfigError::BadValue { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn includes_zero_intervals_sizes_and_tracker_addresses_as_fastdfs_takes_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("storage.conf");
        std::fs::write(
            dir.path().join("http.conf"),
            "http.anti_steal.check_token = true\nhttp.anti_steal.secret_key = s3cret\n",
        )
        .expect("write");
        // `#include` with a space or a tab reads the file; `##include` is a comment. A
        // comment in another encoding (GBK) is no obstacle.
        std::fs::write(
            &p,
            b"# \xd6\xd0\xce\xc4\n##include nothing.conf\n#include http.conf\nheart_beat_interval = 0\n\
              network_timeout = -5\n",
        )
        .expect("write");
        let c = storage_from_fastdfs(&p).expect("loads");
        assert!(c.http.check_token);
        assert_eq!((c.heart_beat_interval, c.network_timeout), (30, 30));
        // Including itself ends at the depth limit with an error, not a stack overflow.
        std::fs::write(&p, "#include storage.conf\n").expect("write");
        assert!(matches!(
            storage_from_fastdfs(&p),
            Err(ConfigError::BadValue { .. })
        ));
        for bad in [
            "tracker_server = 10.0.0.1,192.168.0.1:22122\n",
            "buff_size = 99999999999G\n",
        ] {
            std::fs::write(&p, bad).expect("write");
            assert!(
                matches!(storage_from_fastdfs(&p), Err(ConfigError::BadValue { .. })),
                "{bad}"
            );
        }
        let t = dir.path().join("tracker.conf");
        std::fs::write(&t, "check_active_interval = 0\n").expect("write");
        assert_eq!(
            tracker_from_fastdfs(&t)
                .expect("loads")
                .check_active_interval,
            100
        );
    }

    #[test]
    fn trunk_keys_are_read_and_adjusted_as_fastdfs_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tracker.conf");
        // The sample's trunk keys: off, 256 B to 1 MB slots in 64 MB files.
        std::fs::write(&p, V6_16_SAMPLE_TRACKER).expect("write");
        let c = tracker_from_fastdfs(&p).expect("loads");
        assert_eq!(c.trunk, TrunkConfig::default());
        std::fs::write(
            &p,
            "use_trunk_file = true\nslot_min_size = 512\nslot_max_size = 8MB\n\
             trunk_alloc_alignment_size = 0\ntrunk_file_size = 1MB\n",
        )
        .expect("write");
        let c = tracker_from_fastdfs(&p).expect("loads");
        // Trunk files of at least 4 MB; a slot of at most half a trunk file.
        assert_eq!(
            c.trunk,
            TrunkConfig {
                use_trunk_file: true,
                slot_min_size: 512,
                slot_max_size: 2 * 1024 * 1024,
                trunk_alloc_alignment_size: 0,
                trunk_file_size: 4 * 1024 * 1024,
                ..TrunkConfig::default()
            }
        );
        std::fs::write(
            &p,
            "trunk_create_file_advance = true\ntrunk_create_file_time_base = 01:30\n\
             trunk_create_file_interval = 3600\ntrunk_create_file_space_threshold = 2G\n\
             trunk_init_check_occupying = yes\ntrunk_compress_binlog_min_interval = 60\n\
             trunk_compress_binlog_interval = 0\ntrunk_compress_binlog_time_base = 23:59\n",
        )
        .expect("write");
        let c = tracker_from_fastdfs(&p).expect("loads");
        assert_eq!(
            c.trunk,
            TrunkConfig {
                trunk_create_file_advance: true,
                trunk_create_file_time_base: TimeOfDay {
                    hour: 1,
                    minute: 30
                },
                trunk_create_file_interval: 3600,
                trunk_create_file_space_threshold: 2 * 1024 * 1024 * 1024,
                trunk_init_check_occupying: true,
                trunk_compress_binlog_min_interval: 60,
                trunk_compress_binlog_interval: 0,
                trunk_compress_binlog_time_base: TimeOfDay {
                    hour: 23,
                    minute: 59
                },
                ..TrunkConfig::default()
            }
        );
        for bad in [
            "slot_min_size = 24\n",
            "slot_min_size = 4096\nslot_max_size = 4096\n",
            "trunk_file_size = 8GB\n",
            "trunk_create_file_time_base = 24:00\n",
            "trunk_compress_binlog_time_base = 3\n",
            "trunk_create_file_interval = -1\n",
        ] {
            std::fs::write(&p, bad).expect("write");
            assert!(tracker_from_fastdfs(&p).is_err(), "{bad}");
        }
        let t: TrackerConfig =
            toml::from_str("[trunk]\nuse_trunk_file = true\nslot_max_size = 65536\n")
                .expect("toml");
        assert!(t.trunk.use_trunk_file);
        assert_eq!(t.trunk.slot_max_size, 65536);
        let t: TrackerConfig =
            toml::from_str("[trunk]\ntrunk_create_file_time_base = \"04:05\"\n").expect("toml");
        assert_eq!(t.trunk.trunk_create_file_time_base.to_string(), "04:05");
    }

    #[test]
    fn fastdfs_tracker_conf_identity_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tracker.conf");
        std::fs::write(
            &p,
            "port = 22123\nuse_storage_id = true\nstorage_ids_filename = storage_ids.conf\n\
             id_type_in_filename = id\ntrust_storage_server_id = no\nstore_lookup = 2\n",
        )
        .expect("write");
        let c = tracker_from_fastdfs(&p).expect("loads");
        assert!(c.use_storage_id && !c.trust_storage_server_id);
        assert_eq!(c.id_type_in_filename, IdType::Id);
        // A relative ids file sits next to tracker.conf.
        assert_eq!(c.storage_ids_filename, dir.path().join("storage_ids.conf"));
        assert_eq!(c.bind, "0.0.0.0:22123");
        for bad in ["use_storage_id = maybe\n", "id_type_in_filename = name\n"] {
            std::fs::write(&p, bad).expect("write");
            assert!(
                matches!(tracker_from_fastdfs(&p), Err(ConfigError::BadValue { .. })),
                "{bad}"
            );
        }
        let s = dir.path().join("storage.conf");
        std::fs::write(&s, "server_id = 100001\n").expect("write");
        assert_eq!(storage_from_fastdfs(&s).expect("loads").server_id, "100001");
        let t: TrackerConfig = toml::from_str(
            "use_storage_id = true\nid_type_in_filename = \"id\"\n\
             [[listeners]]\nbind = \"127.0.0.1:22200\"\ncompat = { monitor_layout = \"classic\" }\n",
        )
        .expect("toml");
        assert_eq!(t.listeners[0].compat.monitor_layout, MonitorLayout::Classic);
        assert_eq!(t.listeners[0].compat.profile_name(), "ip15,classic");
    }
}
