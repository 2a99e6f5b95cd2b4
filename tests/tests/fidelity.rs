//! Fidelity: a varied source (several databases and roles, memberships, non-ASCII and large
//! values, sequences part-way, views, functions, contrib extensions, comments, privileges,
//! database settings) is imaged and restored, and source and restore are compared object by
//! object through the catalogs — on the directory store and on Azure Blob (Azurite). On Azurite,
//! `deleteImage` then leaves no object of the image.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sea_orm::sqlx::{self, AssertSqlSafe, Row};
use serde_json::json;
use snapgres_e2e::*;

const PW: &str = "fidelity-source-pw";

async fn exec(c: &mut sqlx::PgConnection, sql: &'static str) {
    sqlx::raw_sql(sql)
        .execute(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn strings(c: &mut sqlx::PgConnection, sql: String) -> Vec<String> {
    sqlx::query(AssertSqlSafe(sql.clone()))
        .fetch_all(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get::<Option<String>, _>(0).unwrap_or_default())
        .collect()
}

const CLUSTER_CHECKS: [&str; 4] = [
    "SELECT rolname||':'||rolsuper||rolinherit||rolcreaterole||rolcreatedb||rolcanlogin||rolbypassrls||':'||rolconnlimit||':'||coalesce(rolpassword,'') FROM pg_authid WHERE rolname NOT LIKE 'pg\\_%' ORDER BY 1",
    "SELECT r.rolname||'>'||m.rolname||':'||a.admin_option FROM pg_auth_members a JOIN pg_roles r ON r.oid=a.roleid JOIN pg_roles m ON m.oid=a.member ORDER BY 1",
    "SELECT datname||':'||pg_get_userbyid(datdba)||':'||pg_encoding_to_char(encoding)||':'||datcollate||':'||coalesce(array_to_string(datacl, ','),'')||':'||coalesce(shobj_description(oid,'pg_database'),'') FROM pg_database WHERE NOT datistemplate ORDER BY 1",
    "SELECT coalesce(d.datname,'*')||':'||coalesce(r.rolname,'*')||':'||array_to_string(setconfig, ',') FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid=s.setdatabase LEFT JOIN pg_roles r ON r.oid=s.setrole ORDER BY 1",
];

const DB_CHECKS: [&str; 8] = [
    "SELECT n.nspname||'.'||c.relname||':'||c.relkind::text||':'||pg_get_userbyid(c.relowner)||':'||coalesce(array_to_string(c.relacl, ','),'')||':'||coalesce(obj_description(c.oid,'pg_class'),'') FROM pg_class c JOIN pg_namespace n ON n.oid=c.relnamespace WHERE n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
    "SELECT table_schema||'.'||table_name||'.'||column_name||':'||data_type||':'||coalesce(column_default,'')||':'||is_nullable FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog','information_schema') ORDER BY 1",
    "SELECT schemaname||'.'||sequencename||':'||coalesce(last_value::text,'null')||':'||increment_by FROM pg_sequences ORDER BY 1",
    "SELECT schemaname||'.'||viewname||':'||definition FROM pg_views WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1",
    "SELECT n.nspname||'.'||p.proname||'('||pg_get_function_arguments(p.oid)||'):'||md5(pg_get_functiondef(p.oid))||':'||coalesce(obj_description(p.oid,'pg_proc'),'') FROM pg_proc p JOIN pg_namespace n ON n.oid=p.pronamespace WHERE n.nspname NOT IN ('pg_catalog','information_schema') AND p.prokind IN ('f','p') ORDER BY 1",
    "SELECT extname||':'||extversion FROM pg_extension ORDER BY 1",
    "SELECT nspname||':'||pg_get_userbyid(nspowner)||':'||coalesce(array_to_string(nspacl, ','),'')||':'||coalesce(obj_description(oid,'pg_namespace'),'') FROM pg_namespace WHERE nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%' ORDER BY 1",
    "SELECT conrelid::regclass::text||':'||conname||':'||pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog','information_schema')) ORDER BY 1",
];

/// Everything compared for one database: its catalog facts and a hash of every table's rows.
async fn database_facts(port: u16, db: &str) -> Vec<(String, Vec<String>)> {
    let mut c = connect("127.0.0.1", port, db, PW).await.unwrap();
    let mut out = Vec::new();
    for q in DB_CHECKS {
        out.push((q.to_owned(), strings(&mut c, q.to_owned()).await));
    }
    let tables = strings(&mut c, "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1".into()).await;
    for t in tables {
        let q = format!("SELECT count(*)::text || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x");
        out.push((q.clone(), strings(&mut c, q).await));
    }
    out
}

async fn cluster_facts(port: u16) -> Vec<(String, Vec<String>)> {
    let mut c = connect("127.0.0.1", port, "postgres", PW).await.unwrap();
    let mut out = Vec::new();
    for q in CLUSTER_CHECKS {
        out.push((q.to_owned(), strings(&mut c, q.to_owned()).await));
    }
    let dbs = strings(
        &mut c,
        "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1".into(),
    )
    .await;
    for db in dbs {
        for (q, v) in database_facts(port, &db).await {
            out.push((format!("[{db}] {q}"), v));
        }
    }
    out
}

async fn build_source(port: u16) {
    let mut c = connect("127.0.0.1", port, "postgres", PW).await.unwrap();
    exec(
        &mut c,
        "CREATE ROLE app_owner LOGIN CREATEDB PASSWORD 'owner-pw-1';
         CREATE ROLE app_reader LOGIN CONNECTION LIMIT 5 PASSWORD 'reader-pw-1';
         CREATE ROLE app_group NOLOGIN;
         GRANT app_group TO app_reader WITH ADMIN OPTION;
         ALTER ROLE app_reader SET statement_timeout = '30s';
         CREATE TABLE public.notes (id int PRIMARY KEY, body text);
         INSERT INTO public.notes VALUES (1, 'Zoë & Łukasz — 日本語 — 🐘'), (2, E'tab\\tnewline\\nquote''');
         COMMENT ON TABLE public.notes IS 'notes: ünïcode';
         COMMENT ON DATABASE postgres IS 'the main database';",
    )
    .await;
    exec(&mut c, "CREATE DATABASE shop OWNER app_owner").await;
    exec(&mut c, "CREATE DATABASE empty_db").await;
    exec(&mut c, "COMMENT ON DATABASE shop IS 'Shop — production copy'; GRANT CONNECT ON DATABASE shop TO app_reader; ALTER DATABASE shop SET work_mem = '8MB'").await;
    let mut s = connect("127.0.0.1", port, "shop", PW).await.unwrap();
    exec(
        &mut s,
        "CREATE EXTENSION citext;
         CREATE EXTENSION hstore;
         CREATE SCHEMA sales AUTHORIZATION app_owner;
         COMMENT ON SCHEMA sales IS 'sales data';
         CREATE TABLE sales.customers (id serial PRIMARY KEY, email citext UNIQUE NOT NULL, name text, attrs hstore, big text, created timestamptz DEFAULT '2026-01-02 03:04:05+00');
         INSERT INTO sales.customers (email, name, attrs, big)
           SELECT 'User' || g || '@Example.com', 'Ñame ' || g || ' 日本', ('k=>' || g)::hstore, CASE WHEN g = 1 THEN repeat(md5(g::text), 40000) END
           FROM generate_series(1, 2000) g;
         SELECT setval('sales.customers_id_seq', 5000);
         CREATE SEQUENCE sales.invoice_no START 100 INCREMENT 7;
         SELECT nextval('sales.invoice_no'), nextval('sales.invoice_no');
         CREATE TABLE sales.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id int REFERENCES sales.customers(id), amount numeric(12,2) CHECK (amount >= 0), meta jsonb, at timestamptz);
         INSERT INTO sales.orders (customer_id, amount, meta, at) SELECT 1 + g % 2000, (g * 1.37)::numeric(12,2), jsonb_build_object('g', g, 'tags', jsonb_build_array('a', 'ß')), '2026-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 3000) g;
         CREATE INDEX orders_at ON sales.orders (at);
         CREATE VIEW sales.big_orders AS SELECT id, amount FROM sales.orders WHERE amount > 1000;
         CREATE FUNCTION sales.total(cust int) RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT coalesce(sum(amount), 0) FROM sales.orders WHERE customer_id = cust $$;
         COMMENT ON FUNCTION sales.total(int) IS 'sum of a customer''s orders';
         COMMENT ON TABLE sales.orders IS 'every order';
         ALTER TABLE sales.customers OWNER TO app_owner;
         GRANT USAGE ON SCHEMA sales TO app_group;
         GRANT SELECT ON sales.customers, sales.big_orders TO app_reader;
         GRANT SELECT, INSERT ON sales.orders TO app_group;",
    )
    .await;
}

async fn round_trip(env: Vec<(String, String)>, azurite: Option<&Azurite>) {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let s = start_with(&data, &env).await.unwrap();
    let d = s.gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "varied", "password": PW } })).await.unwrap();
    let t = s
        .wait_task(
            d["createInstance"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let src = d["createInstance"]["instance"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let i = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { connection { port } } }",
            json!({ "id": src }),
        )
        .await
        .unwrap();
    let src_port = i["instance"]["connection"]["port"].as_u64().unwrap() as u16;
    build_source(src_port).await;
    let before = cluster_facts(src_port).await;

    let d = s.gql("mutation($i: CreateImageInput!) { createImage(input: $i) { image { id } task { id } } }", json!({ "i": { "name": "varied-1", "instanceId": src } })).await.unwrap();
    let t = s
        .wait_task(
            d["createImage"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(180),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let image_id = d["createImage"]["image"]["id"].as_str().unwrap().to_owned();
    let img = s
        .gql(
            "query($id: UUID!) { image(id: $id) { databases location } }",
            json!({ "id": image_id }),
        )
        .await
        .unwrap();
    assert_eq!(
        img["image"]["databases"],
        json!(["empty_db", "postgres", "shop"])
    );
    if let Some(az) = azurite {
        assert!(
            img["image"]["location"]
                .as_str()
                .unwrap()
                .starts_with("az:"),
            "{img}"
        );
        let keys = az.keys(&format!("images/{image_id}")).await.unwrap();
        let expected: Vec<String> = [
            "databases/0000.dump",
            "databases/0001.dump",
            "databases/0002.dump",
            "globals.sql",
            "manifest.json",
        ]
        .iter()
        .map(|k| format!("images/{image_id}/{k}"))
        .collect();
        assert_eq!(keys, expected);
        assert!(
            !data.join("images/images").exists(),
            "nothing went to the directory store"
        );
    }

    let d = s.gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "varied-copy", "sourceImageId": image_id } })).await.unwrap();
    let t = s
        .wait_task(
            d["createInstance"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(180),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let r = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { connection { port } } }",
            json!({ "id": d["createInstance"]["instance"]["id"] }),
        )
        .await
        .unwrap();
    let after = cluster_facts(r["instance"]["connection"]["port"].as_u64().unwrap() as u16).await;
    assert_eq!(
        before.len(),
        after.len(),
        "same objects: {:#?}",
        after.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    let mut compared = 0;
    for ((q, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "differs: {q}");
        compared += a.len();
    }
    assert!(compared > 100, "compared {compared} facts");

    if let Some(az) = azurite {
        let d = s
            .gql(
                "mutation($id: UUID!) { deleteImage(id: $id) { id } }",
                json!({ "id": image_id }),
            )
            .await
            .unwrap();
        let t = s
            .wait_task(
                d["deleteImage"]["id"].as_str().unwrap(),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(t["state"], "SUCCEEDED", "{t}");
        assert!(az
            .keys(&format!("images/{image_id}"))
            .await
            .unwrap()
            .is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fidelity_on_the_directory_store() {
    round_trip(Vec::new(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fidelity_on_azure_blob() {
    let az = Azurite::start().await.unwrap();
    round_trip(az.env(), Some(&az)).await;
}
