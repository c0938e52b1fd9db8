//! `wardend demo` (filled in once the simulator lands).

use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args, _cfg: Config, _shutdown: CancellationToken) -> anyhow::Result<()> {
    anyhow::bail!("demo is not built yet")
}
