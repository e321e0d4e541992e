//! Thumbnails on the fly: a resized copy of an image, made on the first request for one of
//! the configured sizes, stored as a FastDFS slave file of the image (so it replicates, and
//! clients that know slave names find it under `<stem><preset>.<ext>`), and served from
//! that file afterwards.
//!
//! Two ways to ask: `GET /<file id>?w=150&h=150&fit=cover` (the size must be a preset),
//! or the slave name itself, `GET /<stem>_150x150.jpg`, when `_150x150` is a preset.
//! Untrusted images are bounded before they are decoded: file size, pixel count and the
//! decoder's allocations; only `max_concurrent` are made at once.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};

use super::conn::Reply;
use image::{DynamicImage, ImageFormat, imageops::FilterType};
use tokio::sync::Semaphore;

use crate::config::{Fit, ThumbnailConfig, ThumbnailPreset};
use crate::fileid::{BASE64_LEN, FORMATTED_EXT_LEN, RemoteName};
use crate::storage::StorageNode;
use crate::storage::metrics::ThumbnailLabels;
use crate::storage::slave_name;
use crate::storage::store::CommitError;

/// Why no thumbnail was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("w, h and fit must name a configured thumbnail size")]
    SizeNotAllowed,
    #[error("thumbnails are made of JPEG, PNG and WebP files only")]
    NotAnImage,
    #[error("a thumbnail of a slave file is not made")]
    OfASlave,
    #[error("the image is too large to resize: {0}")]
    TooLarge(String),
    #[error("the thumbnail would exceed the output size limit")]
    OutputTooLarge,
    #[error("the image cannot be decoded: {0}")]
    Undecodable(String),
    #[error("the image is not on this storage")]
    NoMaster,
    #[error("too many thumbnails being made; retry shortly")]
    Busy,
    #[error("the thumbnail cannot be stored: {0}")]
    Failed(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::SizeNotAllowed | Refusal::OfASlave => StatusCode::BAD_REQUEST,
            Refusal::NotAnImage | Refusal::Undecodable(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::TooLarge(_) | Refusal::OutputTooLarge => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::NoMaster => StatusCode::NOT_FOUND,
            Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn outcome(&self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::Failed(_) => "failed",
            _ => "refused",
        }
    }

    /// The answer a client gets, never cached.
    pub fn into_reply(self) -> Reply {
        let reply = Reply::text(self.status(), format!("{self}\n"))
            .header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self == Refusal::Busy {
            reply.header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        } else {
            reply
        }
    }
}

/// A thumbnail asked for: the image, the preset, and the slave file that holds it.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub master: RemoteName,
    pub slave: RemoteName,
    pub preset: ThumbnailPreset,
}

/// The thumbnail settings and the cap on how many are made at once.
#[derive(Debug)]
pub struct Thumbnails {
    config: ThumbnailConfig,
    permits: Semaphore,
    /// One gate per thumbnail being made: concurrent first requests for the same one wait
    /// for a single maker instead of each decoding the image.
    making: Gates,
}

/// Thumbnails being made, each with the gate its requests queue at.
type Gates = std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// One request's hold on a thumbnail's gate. The last holder to let go, also one whose
/// client went away while waiting (its future dropped), removes the gate.
struct GatePass<'a> {
    gates: &'a Gates,
    key: String,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> GatePass<'a> {
    fn new(gates: &'a Gates, key: String) -> Self {
        let gate = gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        GatePass { gates, key, gate }
    }
}

impl Drop for GatePass<'_> {
    fn drop(&mut self) {
        // Clones are taken under this lock, so the count cannot grow while it is read:
        // 2 is the map's and this pass's.
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&self.gate) == 2 {
            gates.remove(&self.key);
        }
    }
}

/// Who made a thumbnail that is now stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// This request.
    Now,
    /// Another request, which this one waited for.
    Before,
}

/// Output format by file extension, which is what the HTTP side's Content-Type follows.
fn format_of(ext: &str) -> Option<ImageFormat> {
    match ext.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" => Some(ImageFormat::Jpeg),
        "png" => Some(ImageFormat::Png),
        "webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

fn ext_of(name: &RemoteName) -> &str {
    name.name.rsplit_once('.').map_or("", |(_, e)| e)
}

impl Thumbnails {
    pub fn new(config: ThumbnailConfig) -> Self {
        let permits = Semaphore::new(config.max_concurrent.max(1));
        Thumbnails {
            config,
            permits,
            making: Default::default(),
        }
    }

    /// The thumbnail a query asks for (`w`, `h`, `fit`), if it asks for one.
    pub fn asked(
        &self,
        name: &RemoteName,
        query: &HashMap<String, String>,
    ) -> Result<Option<Wanted>, Refusal> {
        let (w, h) = (query.get("w"), query.get("h"));
        if w.is_none() && h.is_none() && !query.contains_key("fit") {
            return Ok(None);
        }
        let side = |v: Option<&String>| v.and_then(|t| t.parse::<u32>().ok());
        let fit = match query.get("fit") {
            Some(f) => Fit::parse(f).ok_or(Refusal::SizeNotAllowed)?,
            None => Fit::default(),
        };
        let (w, h) = (side(w), side(h));
        let preset = self
            .config
            .presets
            .iter()
            .find(|p| Some(p.width) == w && Some(p.height) == h && p.fit == fit)
            .ok_or(Refusal::SizeNotAllowed)?;
        self.wanted(name, preset).map(Some)
    }

    fn wanted(&self, master: &RemoteName, preset: &ThumbnailPreset) -> Result<Wanted, Refusal> {
        if master.is_slave().unwrap_or(true) {
            return Err(Refusal::OfASlave);
        }
        let ext = ext_of(master);
        if format_of(ext).is_none() {
            return Err(Refusal::NotAnImage);
        }
        let slave = slave_name(master, &preset.name, ext).map_err(|_| Refusal::NotAnImage)?;
        Ok(Wanted {
            master: master.clone(),
            slave,
            preset: preset.clone(),
        })
    }

    /// The thumbnail a missing file's name stands for: `<stem><preset>.<ext>`, whose
    /// image is `<stem>.<ext>`.
    pub fn named(&self, name: &RemoteName) -> Option<Wanted> {
        let ext = ext_of(name);
        format_of(ext)?;
        let without_ext = name.name.strip_suffix(ext)?.strip_suffix('.')?;
        self.config.presets.iter().find_map(|preset| {
            let stem = without_ext.strip_suffix(preset.name.as_str())?;
            let master_name = format!("{stem}.{ext}");
            if master_name.len() != BASE64_LEN + FORMATTED_EXT_LEN {
                return None;
            }
            let master = RemoteName::new(name.store_path, name.hh, name.ll, master_name);
            self.wanted(&master, preset)
                .ok()
                .filter(|w| w.slave == *name)
        })
    }

    /// Makes `wanted` and stores it as its slave file, unless a request for the same
    /// thumbnail made it while this one waited.
    pub async fn make(&self, node: &Arc<StorageNode>, wanted: &Wanted) -> Result<Made, Refusal> {
        let pass = GatePass::new(&self.making, wanted.slave.to_string());
        let result = {
            let _turn = pass.gate.lock().await;
            match self.stored(node, wanted).await {
                true => Ok(Made::Before),
                false => self.make_once(node, wanted).await.map(|()| Made::Now),
            }
        };
        drop(pass);
        match &result {
            Ok(Made::Now) => note(node, "made"),
            // Served from the stored file, and counted as such by the caller.
            Ok(Made::Before) => {}
            // Not on this storage: the request goes on to the file's source, and is
            // counted there.
            Err(Refusal::NoMaster) => {}
            Err(r) => note(node, r.outcome()),
        }
        result
    }

    /// Whether the slave file is on disk (made by a request this one waited for).
    async fn stored(&self, node: &StorageNode, wanted: &Wanted) -> bool {
        let Ok(path) = node.disk.store().file_path(&wanted.slave) else {
            return false;
        };
        crate::disk::run(move || path.is_file())
            .await
            .unwrap_or(false)
    }

    async fn make_once(&self, node: &Arc<StorageNode>, wanted: &Wanted) -> Result<(), Refusal> {
        let wait = Duration::from_secs(self.config.queue_timeout);
        let _permit = tokio::time::timeout(wait, self.permits.acquire())
            .await
            .map_err(|_| Refusal::Busy)?
            .map_err(|_| Refusal::Busy)?;
        let started = Instant::now();
        let max_bytes = self.config.max_source_bytes;
        let (store_node, master) = (node.clone(), wanted.master.clone());
        let read = crate::disk::run(move || -> Result<Vec<u8>, Refusal> {
            let io_refusal = |e: std::io::Error| match e.kind() {
                std::io::ErrorKind::NotFound => Refusal::NoMaster,
                _ => Refusal::Failed(e.to_string()),
            };
            // Its own file, or its slot in a trunk file.
            let opened = store_node
                .disk
                .store()
                .open_file_blocking(&master)
                .map_err(io_refusal)?;
            if opened.size > max_bytes {
                return Err(Refusal::TooLarge(format!(
                    "{} bytes, the limit is {max_bytes}",
                    opened.size
                )));
            }
            let mut data = vec![0u8; opened.size as usize];
            std::os::unix::fs::FileExt::read_exact_at(&opened.file, &mut data, opened.base)
                .map_err(io_refusal)?;
            Ok(data)
        });
        let data = read
            .await
            .map_err(|_| Refusal::Failed("disk step lost".into()))??;
        let config = self.config.clone();
        let preset = wanted.preset.clone();
        let format = format_of(ext_of(&wanted.slave)).ok_or(Refusal::NotAnImage)?;
        let thumbnail =
            tokio::task::spawn_blocking(move || render(&data, &preset, format, &config))
                .await
                .map_err(|_| Refusal::Failed("resizing stopped".into()))??;
        match crate::storage::store_slave(node, &wanted.master, wanted.slave.clone(), thumbnail)
            .await
        {
            Ok(()) | Err(CommitError::Exists) => {}
            Err(CommitError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Refusal::NoMaster);
            }
            Err(e) => return Err(Refusal::Failed(e.to_string())),
        }
        node.metrics
            .thumbnail_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(file = %wanted.slave, master = %wanted.master, "thumbnail made");
        Ok(())
    }
}

/// Counts a thumbnail request by outcome: `stored` when served from the slave file made
/// before, `refused` for a size not allowed (see [`Refusal`] for the others).
pub fn note(node: &StorageNode, outcome: &'static str) {
    node.metrics
        .http_thumbnails
        .get_or_create(&ThumbnailLabels { outcome })
        .inc();
}

/// Decodes `data` within the limits, fits it to `preset` and encodes it as `format`.
pub fn render(
    data: &[u8],
    preset: &ThumbnailPreset,
    format: ImageFormat,
    config: &ThumbnailConfig,
) -> Result<Vec<u8>, Refusal> {
    if data.len() as u64 > config.max_source_bytes {
        return Err(Refusal::TooLarge(format!(
            "{} bytes, the limit is {}",
            data.len(),
            config.max_source_bytes
        )));
    }
    let reader = || -> Result<image::ImageReader<Cursor<&[u8]>>, Refusal> {
        let mut reader = image::ImageReader::new(Cursor::new(data))
            .with_guessed_format()
            .map_err(|e| Refusal::Undecodable(e.to_string()))?;
        if !matches!(
            reader.format(),
            Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)
        ) {
            return Err(Refusal::NotAnImage);
        }
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(config.max_decode_bytes);
        reader.limits(limits);
        Ok(reader)
    };
    // The header alone says how large the image is; nothing is decoded beyond it first.
    let (w, h) = reader()?.into_dimensions().map_err(decode_error)?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > config.max_source_pixels {
        return Err(Refusal::TooLarge(format!(
            "{w}×{h} pixels, the limit is {}",
            config.max_source_pixels
        )));
    }
    let mut decoder = reader()?.into_decoder().map_err(decode_error)?;
    // The decoder's own buffers are bounded by its limits; the image buffer is checked here.
    let total = image::ImageDecoder::total_bytes(&decoder);
    if total > config.max_decode_bytes {
        return Err(Refusal::TooLarge(format!(
            "{total} bytes decoded, the limit is {}",
            config.max_decode_bytes
        )));
    }
    let orientation = image::ImageDecoder::orientation(&mut decoder).map_err(decode_error)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    let fitted = fit(&image, preset);
    let mut out = Vec::new();
    let encoded = match format {
        ImageFormat::Jpeg => {
            let encoder =
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, config.jpeg_quality);
            DynamicImage::ImageRgb8(fitted.to_rgb8()).write_with_encoder(encoder)
        }
        ImageFormat::Png => {
            let encoder = image::codecs::png::PngEncoder::new(&mut out);
            opaque_or_alpha(fitted).write_with_encoder(encoder)
        }
        _ => {
            let encoder = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            opaque_or_alpha(fitted).write_with_encoder(encoder)
        }
    };
    encoded.map_err(|e| Refusal::Failed(e.to_string()))?;
    if out.len() as u64 > config.max_output_bytes {
        return Err(Refusal::OutputTooLarge);
    }
    Ok(out)
}

/// 8-bit RGB, or RGBA when the image has an alpha channel: what every encoder here takes.
fn opaque_or_alpha(image: DynamicImage) -> DynamicImage {
    if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.to_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.to_rgb8())
    }
}

fn fit(image: &DynamicImage, preset: &ThumbnailPreset) -> DynamicImage {
    let (w, h) = (preset.width, preset.height);
    match preset.fit {
        // Never enlarged: an image already inside the box keeps its size.
        Fit::Contain if image.width() <= w && image.height() <= h => image.clone(),
        Fit::Contain => image.resize(w, h, FilterType::Triangle),
        Fit::Cover => cover(image, w.max(1), h.max(1)),
    }
}

/// The centre of `image` in the box's proportions, scaled to `w` × `h`. Cropped in the
/// source's pixels first: scaling a very thin image to cover the box before cropping
/// (65,000 × 2 to 4,875,000 × 150 for a 150 × 150 box) would take gigabytes.
fn cover(image: &DynamicImage, w: u32, h: u32) -> DynamicImage {
    let (sw, sh) = (u64::from(image.width()), u64::from(image.height()));
    let (bw, bh) = (u64::from(w), u64::from(h));
    let (cw, ch) = if sw * bh > sh * bw {
        ((sh * bw / bh).max(1), sh)
    } else {
        (sw, (sw * bh / bw).max(1))
    };
    let (x, y) = ((sw - cw) / 2, (sh - ch) / 2);
    // Each of these is at most the source's side, so it fits in a u32.
    image
        .crop_imm(x as u32, y as u32, cw as u32, ch as u32)
        .resize_exact(w, h, FilterType::Triangle)
}

fn decode_error(e: image::ImageError) -> Refusal {
    match e {
        image::ImageError::Limits(l) => Refusal::TooLarge(l.to_string()),
        image::ImageError::Unsupported(u) => Refusal::Undecodable(u.to_string()),
        other => Refusal::Undecodable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gate_goes_with_its_last_holder_even_one_whose_client_went_away() {
        let gates = Gates::default();
        let first = GatePass::new(&gates, "a".into());
        let turn = first.gate.lock().await;
        // A second request queues behind the first, then its client goes away.
        let mut waiting = Box::pin(async {
            let pass = GatePass::new(&gates, "a".into());
            let _turn = pass.gate.lock().await;
        });
        let gave_up = tokio::time::timeout(Duration::from_millis(20), &mut waiting).await;
        assert!(
            gave_up.is_err(),
            "the gate is held, so the second request waits"
        );
        drop(waiting);
        assert_eq!(
            gates.lock().expect("gates").len(),
            1,
            "the first still holds it"
        );
        drop(turn);
        drop(first);
        assert!(
            gates.lock().expect("gates").is_empty(),
            "no gate left behind"
        );
    }
    use image::{ImageBuffer, Rgb, Rgba};

    fn preset(name: &str, width: u32, height: u32, fit: Fit) -> ThumbnailPreset {
        ThumbnailPreset {
            name: name.into(),
            width,
            height,
            fit,
        }
    }

    fn encoded(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    fn photo(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }))
    }

    fn dimensions(data: &[u8]) -> (ImageFormat, u32, u32) {
        let reader = image::ImageReader::new(Cursor::new(data))
            .with_guessed_format()
            .expect("format");
        let format = reader.format().expect("known format");
        let (w, h) = reader.into_dimensions().expect("dimensions");
        (format, w, h)
    }

    /// Peak resident memory of this process (`VmHWM`), in bytes.
    fn peak_rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .expect("VmHWM")
            .trim()
            .trim_end_matches("kB")
            .trim();
        kb.parse::<u64>().expect("kB") * 1024
    }

    #[test]
    fn a_very_thin_image_is_cropped_before_it_is_scaled_to_cover() {
        fdfs_test_support::alone!();
        let thin = photo(65_000, 2);
        let before = peak_rss();
        let fitted = fit(&thin, &preset("_150x150", 150, 150, Fit::Cover));
        assert_eq!((fitted.width(), fitted.height()), (150, 150));
        let grown = peak_rss().saturating_sub(before);
        assert!(grown < 64 << 20, "peak memory grew by {grown} bytes");
        // The centre of the source is what is kept.
        let wide = photo(400, 100);
        let fitted = fit(&wide, &preset("_50x50", 50, 50, Fit::Cover)).to_rgb8();
        let centre = fitted.get_pixel(25, 25);
        assert!((i32::from(centre[0]) - 200).abs() <= 2, "{centre:?}");
    }

    #[test]
    fn every_format_is_fitted_to_its_preset() {
        let config = ThumbnailConfig::default();
        let cover = preset("_100x100", 100, 100, Fit::Cover);
        let contain = preset("_100x100c", 100, 100, Fit::Contain);
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let source = encoded(photo(400, 200), format);
            let out = render(&source, &cover, format, &config).expect("cover");
            assert_eq!(dimensions(&out), (format, 100, 100), "{format:?} cover");
            let out = render(&source, &contain, format, &config).expect("contain");
            assert_eq!(dimensions(&out), (format, 100, 50), "{format:?} contain");
        }
    }

    #[test]
    fn a_small_image_is_not_enlarged_and_alpha_survives_in_png() {
        let config = ThumbnailConfig::default();
        let small = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(40, 30, Rgba([1, 2, 3, 0])));
        let source = encoded(small, ImageFormat::Png);
        let out = render(
            &source,
            &preset("_s", 100, 100, Fit::Contain),
            ImageFormat::Png,
            &config,
        )
        .expect("render");
        let image = image::load_from_memory(&out).expect("decode");
        assert_eq!((image.width(), image.height()), (40, 30));
        assert!(image.color().has_alpha());
        assert_eq!(image.to_rgba8().get_pixel(0, 0), &Rgba([1, 2, 3, 0]));
    }

    #[test]
    fn limits_refuse_before_decoding() {
        let source = encoded(photo(300, 300), ImageFormat::Png);
        let p = preset("_s", 10, 10, Fit::Cover);
        let few_pixels = ThumbnailConfig {
            max_source_pixels: 300 * 299,
            ..ThumbnailConfig::default()
        };
        assert!(matches!(
            render(&source, &p, ImageFormat::Png, &few_pixels),
            Err(Refusal::TooLarge(_))
        ));
        let few_bytes = ThumbnailConfig {
            max_source_bytes: source.len() as u64 - 1,
            ..ThumbnailConfig::default()
        };
        assert!(matches!(
            render(&source, &p, ImageFormat::Png, &few_bytes),
            Err(Refusal::TooLarge(_))
        ));
        let little_memory = ThumbnailConfig {
            max_decode_bytes: 300 * 300 * 3 - 1,
            ..ThumbnailConfig::default()
        };
        assert!(matches!(
            render(&source, &p, ImageFormat::Png, &little_memory),
            Err(Refusal::TooLarge(_))
        ));
        let small_output = ThumbnailConfig {
            max_output_bytes: 10,
            ..ThumbnailConfig::default()
        };
        assert_eq!(
            render(&source, &p, ImageFormat::Png, &small_output),
            Err(Refusal::OutputTooLarge)
        );
        let config = ThumbnailConfig::default();
        assert_eq!(
            render(b"GIF89a not really", &p, ImageFormat::Png, &config),
            Err(Refusal::NotAnImage)
        );
        let mut truncated = encoded(photo(300, 300), ImageFormat::Jpeg);
        truncated.truncate(200);
        assert!(matches!(
            render(&truncated, &p, ImageFormat::Jpeg, &config),
            Err(Refusal::Undecodable(_))
        ));
    }

    fn thumbnails() -> Thumbnails {
        Thumbnails::new(ThumbnailConfig {
            presets: vec![
                preset("_150x150", 150, 150, Fit::Cover),
                preset("_m", 600, 600, Fit::Contain),
            ],
            ..ThumbnailConfig::default()
        })
    }

    #[test]
    fn queries_and_slave_names_map_to_presets_only() {
        let t = thumbnails();
        let core = crate::fileid::NameCore {
            source: crate::fileid::Source::Ip([192, 168, 0, 2].into()),
            timestamp: 1_700_000_000,
            size_field: 4096,
            crc32: 7,
        }
        .encode();
        let name =
            |tail: &str| RemoteName::parse(&format!("M00/01/02/{core}{tail}")).expect("name");
        let master = name("123.jpg");
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(
            t.asked(&master, &q(&[("token", "x")]))
                .expect("none")
                .is_none()
        );
        let wanted = t
            .asked(&master, &q(&[("w", "150"), ("h", "150"), ("fit", "cover")]))
            .expect("allowed")
            .expect("asked");
        assert_eq!(wanted.slave, name("123_150x150.jpg"));
        let contain = t
            .asked(&master, &q(&[("w", "600"), ("h", "600")]))
            .expect("allowed")
            .expect("asked");
        assert_eq!(contain.preset.name, "_m");
        for refused in [
            q(&[("w", "151"), ("h", "150"), ("fit", "cover")]),
            q(&[("w", "150"), ("h", "150")]),
            q(&[("w", "150"), ("h", "150"), ("fit", "stretch")]),
            q(&[("w", "150")]),
        ] {
            assert_eq!(
                t.asked(&master, &refused).err(),
                Some(Refusal::SizeNotAllowed)
            );
        }
        // The slave name leads back to the image and the preset.
        let named = t.named(&wanted.slave).expect("a preset's slave name");
        assert_eq!(named.master, master);
        assert_eq!(named.preset.name, "_150x150");
        assert!(t.named(&master).is_none());
        assert!(t.named(&name("123_99x99.jpg")).is_none());
        // No thumbnail of a thumbnail, nor of a file that is not an image.
        assert_eq!(
            t.asked(&wanted.slave, &q(&[("w", "600"), ("h", "600")]))
                .err(),
            Some(Refusal::OfASlave)
        );
        assert_eq!(
            t.asked(&name("123.txt"), &q(&[("w", "600"), ("h", "600")]))
                .err(),
            Some(Refusal::NotAnImage)
        );
    }
}
