//! The `snapgres` command line: parse configuration, set up logging, run the subcommand.

use clap::{Parser, Subcommand};
use snapgres::config::{self, DbConfig, LogFormat, ServeConfig};

#[derive(Parser)]
#[command(name = "snapgres", version, about = "Control plane for PostgreSQL images")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, the web console and the task workers.
    Serve(ServeConfig),
    /// Apply database migrations and exit.
    Migrate(DbConfig),
    /// Print the GraphQL schema (SDL).
    Schema,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::new(config::log_filter());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(cfg) => {
            init_logging(cfg.log_format);
            snapgres::app::serve(cfg, shutdown_signal()).await?;
        }
        Command::Migrate(db) => {
            init_logging(LogFormat::Text);
            std::fs::create_dir_all(&db.data_dir)?;
            let conn = snapgres::db::connect(&db.database_url()).await?;
            snapgres::db::migrate(&conn).await?;
            println!("migrations applied");
        }
        Command::Schema => print!("{}", snapgres::graphql::schema::sdl()),
    }
    Ok(())
}
