//! Writes the CRD manifests rendered from the Rust types, or checks that the files on disk
//! match them.
//!
//! ```text
//! crdgen [OUT_DIR...]           # write OUT_DIR/<crd name>.yaml into each directory
//! crdgen --check [OUT_DIR...]   # exit 1 when a file is missing or differs
//! ```
//!
//! The default directories are `crds` and the Helm chart's copy, so the chart can never ship
//! CRDs other than the generated ones.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

/// Render the fdfs.dev CRDs as YAML.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Directories holding the CRD files.
    #[arg(default_values = ["crds", "charts/fdfs-operator/files/crds"])]
    out_dirs: Vec<PathBuf>,
    /// Do not write; fail if any file is missing or differs from what would be written.
    #[arg(long)]
    check: bool,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let manifests = fdfs_operator::crd::manifests()?;

    if args.check {
        let mut stale = Vec::new();
        for dir in &args.out_dirs {
            for manifest in &manifests {
                let path = dir.join(&manifest.file_name);
                match std::fs::read_to_string(&path) {
                    Ok(on_disk) if on_disk == manifest.yaml => {}
                    Ok(_) => stale.push(format!("{} differs", path.display())),
                    Err(err) => stale.push(format!("{}: {err}", path.display())),
                }
            }
        }
        if stale.is_empty() {
            for dir in &args.out_dirs {
                println!("{} CRDs up to date in {}", manifests.len(), dir.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
        for line in &stale {
            eprintln!("{line}");
        }
        eprintln!("regenerate with: cargo run -p fdfs-operator --bin crdgen");
        return Ok(ExitCode::FAILURE);
    }

    for dir in &args.out_dirs {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for manifest in &manifests {
            let path = dir.join(&manifest.file_name);
            std::fs::write(&path, &manifest.yaml)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
