//! The web console in headless Chromium (chromedriver + fantoccini) against a real
//! `snapgres serve`: sign in, create an instance, image it, restore the image from the images
//! page, and watch the restore's nine steps turn to succeeded live on the task page (no reload);
//! the restored instance then shows as running; after a server restart the open tasks page
//! reconnects on its own. Screenshots go to `<target>/screenshots/`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use snapgres_e2e::*;

fn console_dir() -> PathBuf {
    let d = PathBuf::from(
        std::env::var("SNAPGRES_CONSOLE_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../web/dist").to_owned()),
    );
    assert!(
        d.join("index.html").exists(),
        "the console is not built at {}: scripts/test builds it with trunk",
        d.display()
    );
    d
}

fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target>/debug/deps/<test> → <target>/screenshots
    let d = exe.ancestors().nth(3).unwrap().join("screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn wait_css(c: &Client, css: &str, limit: Duration) -> Result<fantoccini::elements::Element> {
    c.wait()
        .at_most(limit)
        .every(Duration::from_millis(100))
        .for_element(Locator::Css(css))
        .await
        .with_context(|| format!("waiting for {css}"))
}

async fn fill(c: &Client, css: &str, text: &str) -> Result<()> {
    let e = wait_css(c, css, Duration::from_secs(10)).await?;
    e.clear().await?;
    e.send_keys(text).await?;
    Ok(())
}

async fn task_done(c: &Client, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(e) = c.find(Locator::Css("#task-state")).await {
            let st = e.attr("data-state").await?.unwrap_or_default();
            if st == "SUCCEEDED" {
                return Ok(());
            }
            if st == "FAILED" || st == "CANCELLED" {
                bail!("task ended {st}: {}", c.source().await.unwrap_or_default());
            }
        }
        if start.elapsed() > limit {
            bail!("task not done within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn journey(c: &Client, s: &Server) -> Result<()> {
    let shots = screenshot_dir();
    c.goto(&format!("{}/signin", s.url)).await?;
    fill(c, "#token", &s.token).await?;
    c.find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_css(
        c,
        "a.button[href='/instances/new']",
        Duration::from_secs(15),
    )
    .await?
    .click()
    .await?;

    fill(c, "#new-name", "web-src").await?;
    fill(c, "#new-password", "web-console-pw-1").await?;
    c.find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_css(c, "ol.steps li", Duration::from_secs(15)).await?;
    task_done(c, Duration::from_secs(120)).await?;

    c.goto(&format!("{}/", s.url)).await?;
    fill(
        c,
        "tr[data-instance='web-src'] input[name='image-name']",
        "web-img",
    )
    .await?;
    c.find(Locator::Css(
        "tr[data-instance='web-src'] button[type=submit]",
    ))
    .await?
    .click()
    .await?;
    wait_css(c, "ol.steps li", Duration::from_secs(15)).await?;
    task_done(c, Duration::from_secs(120)).await?;

    c.goto(&format!("{}/images", s.url)).await?;
    let restore = wait_css(
        c,
        "tr[data-image='web-img'] a.button",
        Duration::from_secs(15),
    )
    .await?;
    std::fs::write(shots.join("images-page.png"), c.screenshot().await?)?;
    restore.click().await?;
    fill(c, "#restore-name", "web-copy").await?;
    c.find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_css(c, "ol.steps li", Duration::from_secs(15)).await?;
    // A marker that a page reload would wipe.
    c.execute("window.__noReload = true; return true;", vec![])
        .await?;
    let mut seen_unfinished = false;
    let start = Instant::now();
    loop {
        let states = c
            .execute("return Array.from(document.querySelectorAll('ol.steps li')).map(li => [li.dataset.step, li.className]);", vec![])
            .await?;
        let states: Vec<(String, String)> = serde_json::from_value(states)?;
        let names: Vec<&str> = states.iter().map(|(n, _)| n.as_str()).collect();
        if names != RESTORE_STEPS {
            bail!("the task page lists {names:?}");
        }
        seen_unfinished |= states.iter().any(|(_, c)| c != "succeeded");
        if states.iter().all(|(_, c)| c == "succeeded") {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("steps not all succeeded: {states:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task_done(c, Duration::from_secs(10)).await?;
    assert!(
        seen_unfinished,
        "steps were seen before they finished, i.e. they changed live"
    );
    assert_eq!(
        c.execute("return window.__noReload === true;", vec![])
            .await?,
        json!(true),
        "no reload happened"
    );
    let log = c.find(Locator::Css("pre.log")).await?.text().await?;
    assert!(
        log.contains("source image's password"),
        "the log tail shows the task's lines: {log:?}"
    );
    std::fs::write(shots.join("restore-task-page.png"), c.screenshot().await?)?;

    c.goto(&format!("{}/", s.url)).await?;
    let badge = wait_css(
        c,
        "tr[data-instance='web-copy'] .badge",
        Duration::from_secs(15),
    )
    .await?;
    assert_eq!(badge.text().await?, "running");

    // Leave the live tasks list open for the server restart below.
    c.goto(&format!("{}/tasks", s.url)).await?;
    wait_css(c, "table tbody tr", Duration::from_secs(15)).await?;
    c.execute("window.__noReload = true; return true;", vec![])
        .await?;
    Ok(())
}

/// After a server restart, the open tasks page picks up a new task without a reload.
async fn after_restart(c: &Client, s: &Server) -> Result<()> {
    let d = s
        .gql("{ instances(first: 10) { nodes { id name } } }", json!({}))
        .await?;
    let src = d["instances"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "web-src")
        .unwrap()["id"]
        .clone();
    let d = s
        .gql(
            "mutation($i: CreateImageInput!) { createImage(input: $i) { task { id } } }",
            json!({ "i": { "name": "after-restart", "instanceId": src } }),
        )
        .await?;
    let task = d["createImage"]["task"]["id"].as_str().unwrap().to_owned();
    wait_css(
        c,
        &format!("a[href='/tasks/{task}']"),
        Duration::from_secs(30),
    )
    .await
    .context("the tasks page reconnected and shows the new task")?;
    assert_eq!(
        c.execute("return window.__noReload === true;", vec![])
            .await?,
        json!(true),
        "no reload happened"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_the_console_with_live_steps() {
    let console = console_dir();
    let dir = temp_dir();
    let data = dir.path().join("data");
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = [("SNAPGRES_CONSOLE_DIR", console.to_str().unwrap())];
    let mut s = Server::start_on(&data, http_port, &env).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = tokio::process::Command::new(
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
    )
    .arg(format!("--port={port}"))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true)
    .spawn()
    .expect("chromedriver (apt chromium-driver) must be installed");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": "/usr/bin/chromium", "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run", "--window-size=1200,900", format!("--user-data-dir={}", profile.path().display())] }),
    );
    let start = Instant::now();
    let client = loop {
        match ClientBuilder::native()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                panic!("cannot reach chromedriver: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let mut result = journey(&client, &s).await;
    if result.is_ok() {
        s.stop().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        s = Server::start_on(&data, http_port, &env).await.unwrap();
        result = after_restart(&client, &s).await;
    }
    // Close the browser also when the journey failed.
    let _ = client.close().await;
    let _ = driver.kill().await;
    result.unwrap();
}
