//! Writes the `sync_frame` seed corpus (fuzz/seeds/sync_frame/): real frames of every message
//! type, as the crates' own tests make them. Run from the repository root:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --features make-seeds --bin make_seeds
//! ```

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/sync_frame");
    std::fs::create_dir_all(&dir)?;
    let frames = inloop_fuzz::sample_frames();
    for (i, frame) in frames.iter().enumerate() {
        std::fs::write(dir.join(format!("frame-{i:02}")), frame)?;
    }
    println!("{} frames written to {}", frames.len(), dir.display());
    Ok(())
}
