//! Benchmark: on one generated database, times raw `pg_dump -Fc` against `createImage`, and raw
//! `initdb + start + pg_restore -j2` against a restore through Snapgres, in one run, and prints
//! the ratios. Run with `scripts/bench [SIZE_MB]` (release build).
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use sea_orm::sqlx::{self, Row};
use serde_json::json;
use snapgres_e2e::*;

const PW: &str = "bench-password-1";

fn as_pg(prog: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &format!("{PG_BIN}/{prog}")]);
        c
    } else {
        Command::new(format!("{PG_BIN}/{prog}"))
    }
}

fn run(c: &mut Command) -> Result<()> {
    let out = c.output()?;
    if !out.status.success() {
        bail!("{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn mb(b: f64) -> String {
    format!("{:.1} MB", b / 1e6)
}

#[tokio::main]
async fn main() -> Result<()> {
    let size_mb: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = temp_dir();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[]).await?;
    let d = s.gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "bench-src", "password": PW } })).await?;
    let t = s
        .wait_task(
            d["createInstance"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(300),
        )
        .await?;
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let src_id = d["createInstance"]["instance"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let i = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { connection { port } } }",
            json!({ "id": src_id }),
        )
        .await?;
    let port = i["instance"]["connection"]["port"].as_u64().unwrap() as u16;

    // Data that compresses like real data: hex notes (~2x) and random blobs (incompressible).
    eprintln!("generating ~{size_mb} MB ...");
    let mut c = connect("127.0.0.1", port, "postgres", PW).await?;
    sqlx::raw_sql("CREATE EXTENSION pgcrypto; CREATE TABLE notes (id bigint PRIMARY KEY, note text, blob bytea)").execute(&mut c).await?;
    let rows = size_mb * 1_000_000 / 1100;
    let mut done = 0;
    while done < rows {
        let n = (rows - done).min(50_000);
        let q = format!(
            "INSERT INTO notes SELECT g, repeat(md5(random()::text), 8) || ' ' || g, gen_random_bytes(700) FROM generate_series({}, {}) g",
            done + 1,
            done + n
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(q))
            .execute(&mut c)
            .await?;
        done += n;
    }
    sqlx::raw_sql("CREATE INDEX ON notes (note)")
        .execute(&mut c)
        .await?;
    sqlx::raw_sql("VACUUM ANALYZE notes")
        .execute(&mut c)
        .await?;
    let size: i64 = sqlx::query("SELECT pg_database_size('postgres') AS s")
        .fetch_one(&mut c)
        .await?
        .get("s");
    eprintln!("database: {}", mb(size as f64));

    // Raw pg_dump -Fc (default compression, and -Z1 which Snapgres uses by default).
    let dump_dir = dir.path().join("raw");
    std::fs::create_dir(&dump_dir)?;
    let dump = dump_dir.join("raw.dump");
    let t0 = Instant::now();
    run(Command::new(format!("{PG_BIN}/pg_dump"))
        .args([
            "-Fc",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-f",
        ])
        .arg(&dump)
        .env("PGPASSWORD", PW))?;
    let raw_dump = t0.elapsed();
    let raw_dump_size = std::fs::metadata(&dump)?.len() as f64;
    let dump1 = dump_dir.join("raw-z1.dump");
    let t0 = Instant::now();
    run(Command::new(format!("{PG_BIN}/pg_dump"))
        .args([
            "-Fc",
            "-Z1",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-f",
        ])
        .arg(&dump1)
        .env("PGPASSWORD", PW))?;
    let raw_dump_z1 = t0.elapsed();

    // createImage.
    let t0 = Instant::now();
    let d = s.gql("mutation($i: CreateImageInput!) { createImage(input: $i) { image { id } task { id } } }", json!({ "i": { "name": "bench", "instanceId": src_id } })).await?;
    let t = s
        .wait_task(
            d["createImage"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(3600),
        )
        .await?;
    let image_time = t0.elapsed();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let image_id = d["createImage"]["image"]["id"].as_str().unwrap().to_owned();
    let img = s
        .gql(
            "query($id: UUID!) { image(id: $id) { sizeBytes } }",
            json!({ "id": image_id }),
        )
        .await?;
    let image_size = img["image"]["sizeBytes"].as_f64().unwrap();

    // Raw restore: initdb + start + pg_restore -j2 of the default dump.
    let pgdata = dump_dir.join("pgdata");
    std::fs::create_dir(&pgdata)?;
    if is_root() {
        let u = nix::unistd::User::from_name("postgres")?.unwrap();
        for p in [dump_dir.as_path(), pgdata.as_path(), dump.as_path()] {
            std::os::unix::fs::chown(p, Some(u.uid.as_raw()), Some(u.gid.as_raw()))?;
        }
    }
    let raw_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let t0 = Instant::now();
    run(as_pg("initdb")
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-D",
        ])
        .arg(&pgdata))?;
    run(as_pg("pg_ctl")
        .args(["start", "-w", "-D"])
        .arg(&pgdata)
        .arg("-l")
        .arg(dump_dir.join("log"))
        .arg("-o")
        .arg(format!(
            "-p {raw_port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        )))?;
    run(Command::new(format!("{PG_BIN}/pg_restore"))
        .args([
            "-j2",
            "--exit-on-error",
            "-h",
            "127.0.0.1",
            "-p",
            &raw_port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg(&dump))?;
    let raw_restore = t0.elapsed();
    let _ = as_pg("pg_ctl")
        .args(["stop", "-m", "fast", "-D"])
        .arg(&pgdata)
        .output();

    // Restore through Snapgres.
    let t0 = Instant::now();
    let d = s.gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "bench-copy", "sourceImageId": image_id } })).await?;
    let t = s
        .wait_task(
            d["createInstance"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(3600),
        )
        .await?;
    let restore_time = t0.elapsed();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let r = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { connection { port } } }",
            json!({ "id": d["createInstance"]["instance"]["id"] }),
        )
        .await?;
    let mut rc = connect(
        "127.0.0.1",
        r["instance"]["connection"]["port"].as_u64().unwrap() as u16,
        "postgres",
        PW,
    )
    .await?;
    let n: i64 = sqlx::query("SELECT count(*) AS n FROM notes")
        .fetch_one(&mut rc)
        .await?
        .get("n");
    assert_eq!(n as u64, rows, "restored row count");

    let dir_peak = s.pid().map(peak_rss).unwrap_or_default();

    // The same on Azure Blob (Azurite): the server restarts on the same data dir with the Azure
    // store (its clean stop stops the instances; the start brings them back).
    let mut s = s;
    s.stop().await;
    let az = Azurite::start().await?;
    let s = start_with(&data, &az.env()).await?;
    let t0 = Instant::now();
    let d = s.gql("mutation($i: CreateImageInput!) { createImage(input: $i) { image { id } task { id } } }", json!({ "i": { "name": "bench-az", "instanceId": src_id } })).await?;
    let t = s
        .wait_task(
            d["createImage"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(3600),
        )
        .await?;
    let az_image_time = t0.elapsed();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let az_image_id = d["createImage"]["image"]["id"].as_str().unwrap().to_owned();
    let t0 = Instant::now();
    let d = s.gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "bench-az-copy", "sourceImageId": az_image_id } })).await?;
    let t = s
        .wait_task(
            d["createInstance"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(3600),
        )
        .await?;
    let az_restore_time = t0.elapsed();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let r = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { connection { port } } }",
            json!({ "id": d["createInstance"]["instance"]["id"] }),
        )
        .await?;
    let mut rc = connect(
        "127.0.0.1",
        r["instance"]["connection"]["port"].as_u64().unwrap() as u16,
        "postgres",
        PW,
    )
    .await?;
    let n: i64 = sqlx::query("SELECT count(*) AS n FROM notes")
        .fetch_one(&mut rc)
        .await?
        .get("n");
    assert_eq!(n as u64, rows, "restored row count (Azurite)");
    let az_peak = s.pid().map(peak_rss).unwrap_or_default();

    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "\nSnapgres benchmark: database {} ({} rows), {} cores",
        mb(size as f64),
        rows,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("{:<44} {:>9} {:>11}", "operation", "seconds", "size");
    println!(
        "{:<44} {:>9.2} {:>11}",
        "raw pg_dump -Fc (gzip 6) to a file",
        secs(raw_dump),
        mb(raw_dump_size)
    );
    println!(
        "{:<44} {:>9.2} {:>11}",
        "raw pg_dump -Fc -Z1 to a file",
        secs(raw_dump_z1),
        mb(std::fs::metadata(&dump1)?.len() as f64)
    );
    println!(
        "{:<44} {:>9.2} {:>11}",
        "createImage (API → READY, -Z1, sha256, store)",
        secs(image_time),
        mb(image_size)
    );
    println!(
        "{:<44} {:>9.2}",
        "raw initdb + start + pg_restore -j2",
        secs(raw_restore)
    );
    println!(
        "{:<44} {:>9.2}",
        "restore (API → RUNNING, verified, tested)",
        secs(restore_time)
    );
    println!(
        "{:<44} {:>9.2}",
        "createImage on Azurite",
        secs(az_image_time)
    );
    println!(
        "{:<44} {:>9.2}",
        "restore from Azurite",
        secs(az_restore_time)
    );
    println!(
        "ratio createImage / raw pg_dump -Fc:      {:.2} (directory)  {:.2} (Azurite)",
        secs(image_time) / secs(raw_dump),
        secs(az_image_time) / secs(raw_dump)
    );
    println!(
        "ratio createImage / raw pg_dump -Fc -Z1:  {:.2} (directory)  {:.2} (Azurite)",
        secs(image_time) / secs(raw_dump_z1),
        secs(az_image_time) / secs(raw_dump_z1)
    );
    println!(
        "ratio restore / raw initdb+pg_restore -j2: {:.2} (directory)  {:.2} (Azurite)",
        secs(restore_time) / secs(raw_restore),
        secs(az_restore_time) / secs(raw_restore)
    );
    println!("peak server RSS (VmHWM): {dir_peak} with the directory store, {az_peak} with Azurite (database {})", mb(size as f64));
    drop(s);
    drop(az);
    Ok(())
}

fn peak_rss(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: ?")
        .trim_start_matches("VmHWM:")
        .trim()
        .to_owned()
}
