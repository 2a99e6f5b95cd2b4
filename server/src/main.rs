//! The `snapgres` command line: parse configuration, set up logging, run the subcommand.

use clap::{Parser, Subcommand};
use snapgres::config::{self, DbConfig, LogFormat, ServeConfig};

#[derive(Parser)]
#[command(
    name = "snapgres",
    version,
    about = "Control plane for PostgreSQL images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, the web console and the task workers.
    Serve(Box<ServeConfig>),
    /// Apply database migrations and exit.
    Migrate(DbConfig),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Kubernetes helpers.
    K8s {
        #[command(subcommand)]
        action: K8sAction,
    },
    /// Manage API tokens.
    Token {
        #[command(flatten)]
        db: DbConfig,
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
enum K8sAction {
    /// Write every manifest the platform would apply for an example fresh instance, backup and
    /// restore, plus the server's own (Deployment, ServiceAccount, Role, RoleBinding, ConfigMap).
    Manifests {
        /// Directory to write into.
        #[arg(long)]
        example: std::path::PathBuf,
        #[command(flatten)]
        kube: config::KubeConfig,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print it (once).
    Create {
        /// A name saying whose token it is.
        #[arg(long)]
        name: String,
        /// viewer (read, subscribe), operator (also create/restore/delete/cancel), admin (everything).
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
    },
    /// List tokens (never the tokens themselves).
    List,
    /// Revoke a token by id, or every token with a name.
    Revoke {
        /// Token id or name.
        id_or_name: String,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::new(config::log_filter());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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
            snapgres::app::serve(*cfg, shutdown_signal()).await?;
        }
        Command::Migrate(db) => {
            init_logging(LogFormat::Text);
            std::fs::create_dir_all(&db.data_dir)?;
            let conn = snapgres::db::connect(&db.database_url()).await?;
            snapgres::db::migrate(&conn).await?;
            println!("migrations applied");
        }
        Command::Schema => print!("{}", snapgres::graphql::schema::sdl()),
        Command::K8s {
            action: K8sAction::Manifests { example, kube },
        } => {
            let settings = snapgres::platform::kubernetes::KubeSettings::from_config(&kube);
            for f in settings.write_examples(&example)? {
                println!("{}", example.join(&f.path).display());
            }
        }
        Command::Token { db, action } => {
            init_logging(LogFormat::Text);
            std::fs::create_dir_all(&db.data_dir)?;
            let conn = snapgres::db::connect(&db.database_url()).await?;
            snapgres::db::migrate(&conn).await?;
            let svc = snapgres::service::TokenAdmin::new(conn);
            match action {
                TokenAction::Create { name, role } => {
                    let role = match role.as_str() {
                        "viewer" => entity::api_token::Role::Viewer,
                        "operator" => entity::api_token::Role::Operator,
                        _ => entity::api_token::Role::Admin,
                    };
                    let (row, token) = svc.create(&name, role).await?;
                    println!("id:    {}\nname:  {}\nrole:  {:?}\ntoken: {token}\n(shown once; stored hashed)", row.id, row.name, row.role);
                }
                TokenAction::List => {
                    for t in svc.list().await? {
                        let state = if t.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        println!(
                            "{}  {:<24} {:<8} {}  {}",
                            t.id,
                            t.name,
                            format!("{:?}", t.role).to_lowercase(),
                            t.created_at.format("%Y-%m-%d %H:%M"),
                            state
                        );
                    }
                }
                TokenAction::Revoke { id_or_name } => {
                    let n = svc.revoke(&id_or_name).await?;
                    println!("revoked {n} token(s)");
                }
            }
        }
    }
    Ok(())
}
