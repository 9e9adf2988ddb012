//! `prjfs bench`: workloads run through a prjfs mount and on the underlying file
//! system in the same run, printed side by side with ratios.

use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> Result<(), String> {
    Err("no benchmark selected".into())
}
