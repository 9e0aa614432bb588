//! Seeds a store with N outputs (default 10 million) and reports the time it took, the
//! process's resident memory (VmHWM, VmRSS) and the store's size, then does random point
//! lookups and reports memory again. For the "a shard seeded with 10 million outputs stays
//! under 1 GiB resident" bar.
//!
//! Run: `cargo run --release -p cbdc-shard --example seed_memory -- [COUNT] [DIR]`.

use std::time::Instant;

use cbdc_core::{Amount, Hash, UhsId};
use cbdc_shard::UhsStore;

fn id(n: u64) -> UhsId {
    UhsId(Hash::digest_parts(&[b"seed", &n.to_le_bytes()]))
}

fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000_000);
    let temp;
    let path = match args.next() {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    println!("start: {}", memory());
    let store = UhsStore::open(&path)?;
    let started = Instant::now();
    let supply = store.seed((0..count).map(|i| (id(i), Amount::from_cents(1 + i % 100))))?;
    let took = started.elapsed();
    println!(
        "seeded {} outputs ({} total) in {:.1?} ({:.0} outputs/s)",
        supply.count,
        supply.total,
        took,
        count as f64 / took.as_secs_f64()
    );
    println!("after seed: {}", memory());
    println!("store on disk: {} MiB", dir_size(&path) >> 20);

    let started = Instant::now();
    let lookups = 1_000_000u64;
    let mut found = 0u64;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..lookups {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if store.get(&id(x % count.max(1)))?.is_some() {
            found += 1;
        }
    }
    let took = started.elapsed();
    println!(
        "{lookups} random lookups ({found} found) in {:.1?} ({:.0}/s)",
        took,
        lookups as f64 / took.as_secs_f64()
    );
    println!("after lookups: {}", memory());
    let audit_started = Instant::now();
    let audit = store.audit()?;
    println!(
        "audit: {:?} consistent={} in {:.1?}",
        audit.scanned,
        audit.is_consistent(),
        audit_started.elapsed()
    );
    println!("after audit: {}", memory());
    Ok(())
}
