//! Image storage over `object_store`: typed object keys, streaming uploads and downloads that
//! count bytes and compute sha256 on the way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, RetryConfig};
use std::time::Duration;

use crate::config::AzureConfig;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported storage URL {0:?} (use a directory, file:///dir, az://container or s3://bucket)")]
    BadUrl(String),
    #[error("configuring the {store} store")]
    Configure {
        store: &'static str,
        #[source]
        source: object_store::Error,
    },
    #[error("creating the Azure container {container}: {message}")]
    CreateContainer { container: String, message: String },
    #[error("creating the storage directory {path}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object store operation on {key} failed")]
    Store {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("reading the data to upload to {key}")]
    Source {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the local file {path}")]
    LocalFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether trying again may help (store outages do; bad configuration does not).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. } | object_store::Error::NotImplemented { .. }
            ),
            Self::Source { .. } => false,
            Self::LocalFile { .. } => true,
            Self::BadUrl(_) | Self::CreateDir { .. } | Self::Configure { .. } => false,
            Self::CreateContainer { .. } => true,
        }
    }
}

/// Object keys of one image, never built by hand elsewhere.
#[derive(Debug, Clone, Copy)]
pub struct ImageKeys {
    id: Uuid,
}

impl ImageKeys {
    /// Keys of image `id`.
    pub fn new(id: Uuid) -> Self {
        Self { id }
    }
    /// Prefix all of the image's objects share.
    pub fn prefix(&self) -> ObjectPath {
        ObjectPath::from(format!("images/{}", self.id))
    }
    /// The manifest.
    pub fn manifest(&self) -> ObjectPath {
        self.prefix().join("manifest.json")
    }
    /// Roles and other cluster-wide objects (`pg_dumpall --globals-only`).
    pub fn globals(&self) -> ObjectPath {
        self.prefix().join("globals.sql")
    }
    /// The dump of the `n`th database (names live in the manifest: they may hold any character).
    pub fn database(&self, n: usize) -> ObjectPath {
        self.prefix().join("databases").join(format!("{n:04}.dump"))
    }
}

/// What an upload or download measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    pub size: u64,
    pub sha256: String,
}

/// Image storage.
#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    kind: &'static str,
    container: String,
    local_root: Option<PathBuf>,
    azure: Option<AzureConfig>,
}

/// Azurite's well-known development account (public, documented by Microsoft).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Bounded retries inside object_store: the step's own retry policy handles longer outages.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}

impl Storage {
    /// Opens the store a URL names; `None` means the `images/` directory under the data dir.
    pub fn from_url(
        url: Option<&str>,
        data_dir: &Path,
        azure: &AzureConfig,
    ) -> Result<Self, Error> {
        let dir = match url {
            None => data_dir.join("images"),
            Some(u) if u.starts_with("file://") => PathBuf::from(&u["file://".len()..]),
            Some(u) if u.starts_with("az://") || u.starts_with("azure://") => {
                let container = u
                    .split_once("://")
                    .map(|(_, c)| c.trim_end_matches('/'))
                    .unwrap_or_default();
                if container.is_empty() || container.contains('/') {
                    return Err(Error::BadUrl(u.to_owned()));
                }
                let store = MicrosoftAzureBuilder::from_env()
                    .with_container_name(container)
                    .with_retry(retry_config())
                    .build()
                    .map_err(|source| Error::Configure {
                        store: "azure",
                        source,
                    })?;
                return Ok(Self {
                    store: Arc::new(store),
                    kind: "az",
                    container: container.to_owned(),
                    local_root: None,
                    azure: Some(azure.clone()),
                });
            }
            Some(u) if u.starts_with("s3://") => {
                let bucket = u["s3://".len()..].trim_end_matches('/');
                if bucket.is_empty() || bucket.contains('/') {
                    return Err(Error::BadUrl(u.to_owned()));
                }
                let store = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry_config())
                    .build()
                    .map_err(|source| Error::Configure {
                        store: "s3",
                        source,
                    })?;
                return Ok(Self {
                    store: Arc::new(store),
                    kind: "s3",
                    container: bucket.to_owned(),
                    local_root: None,
                    azure: None,
                });
            }
            Some(u) if u.contains("://") => return Err(Error::BadUrl(u.to_owned())),
            Some(u) => PathBuf::from(u),
        };
        std::fs::create_dir_all(&dir).map_err(|source| Error::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
        let dir = std::fs::canonicalize(&dir).map_err(|source| Error::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
        let fs = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|source| Error::Store {
                key: dir.display().to_string(),
                source,
            })?
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(fs),
            kind: "file",
            container: dir.display().to_string(),
            local_root: Some(dir),
            azure: None,
        })
    }

    /// Creates the Azure container if it does not exist (a no-op for other stores, and for Azure
    /// without an account key, where the container must be made by the operator).
    pub async fn ensure_container(&self) -> Result<(), Error> {
        let Some(az) = &self.azure else { return Ok(()) };
        let (base, account, key) = if az.azure_use_emulator {
            let account = az
                .azure_account
                .clone()
                .unwrap_or_else(|| AZURITE_ACCOUNT.to_owned());
            let url = az
                .azurite_url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:10000".to_owned());
            let key = az
                .azure_key
                .as_ref()
                .map(|k| k.expose().to_owned())
                .unwrap_or_else(|| AZURITE_KEY.to_owned());
            (
                format!("{}/{account}", url.trim_end_matches('/')),
                account,
                key,
            )
        } else {
            let (Some(account), Some(key)) = (az.azure_account.clone(), az.azure_key.as_ref())
            else {
                tracing::info!(container = %self.container, "no account key: assuming the Azure container exists");
                return Ok(());
            };
            (
                format!("https://{account}.blob.core.windows.net"),
                account,
                key.expose().to_owned(),
            )
        };
        azure::create_container(
            &base,
            &account,
            &key,
            &self.container,
            az.azure_use_emulator,
        )
        .await
    }

    /// The store kind recorded on images (`file`, `az`, `s3`).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The directory, container or bucket.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// Streams `reader` into the object `key` as a multipart upload, hashing as it goes;
    /// `on_bytes` is called with the running total. On any failure the upload is aborted.
    pub async fn put_stream<R, F>(
        &self,
        key: &ObjectPath,
        mut reader: R,
        mut on_bytes: F,
    ) -> Result<Transferred, Error>
    where
        R: AsyncRead + Unpin,
        F: FnMut(u64),
    {
        let mut w = BufWriter::with_capacity(Arc::clone(&self.store), key.clone(), 8 * 1024 * 1024)
            .with_max_concurrency(4);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        let res: Result<(), Error> = async {
            loop {
                let n = reader
                    .read(&mut buf)
                    .await
                    .map_err(|source| Error::Source {
                        key: key.to_string(),
                        source,
                    })?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                size += n as u64;
                w.write_all(&buf[..n]).await.map_err(|e| store_io(key, e))?;
                on_bytes(size);
            }
            Ok(())
        }
        .await;
        if let Err(e) = res {
            let _ = w.abort().await;
            return Err(e);
        }
        // A failed shutdown has already given up the upload; BufWriter must not be aborted
        // after it (it panics), and the caller deletes the image prefix anyway.
        w.shutdown().await.map_err(|e| store_io(key, e))?;
        Ok(Transferred {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Writes a small object in one request.
    pub async fn put_bytes(&self, key: &ObjectPath, bytes: Bytes) -> Result<Transferred, Error> {
        let t = Transferred {
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        };
        self.store
            .put(key, PutPayload::from(bytes))
            .await
            .map_err(|source| Error::Store {
                key: key.to_string(),
                source,
            })?;
        Ok(t)
    }

    /// Reads a small object whole.
    pub async fn get_bytes(&self, key: &ObjectPath) -> Result<Bytes, Error> {
        let r = self.store.get(key).await.map_err(|source| Error::Store {
            key: key.to_string(),
            source,
        })?;
        r.bytes().await.map_err(|source| Error::Store {
            key: key.to_string(),
            source,
        })
    }

    /// Downloads an object to a local file, hashing as it goes.
    pub async fn get_to_file<F: FnMut(u64)>(
        &self,
        key: &ObjectPath,
        dest: &Path,
        mut on_bytes: F,
    ) -> Result<Transferred, Error> {
        let local = |source| Error::LocalFile {
            path: dest.display().to_string(),
            source,
        };
        let r = self.store.get(key).await.map_err(|source| Error::Store {
            key: key.to_string(),
            source,
        })?;
        let mut stream = r.into_stream();
        let mut file = tokio::fs::File::create(dest).await.map_err(local)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| Error::Store {
                key: key.to_string(),
                source,
            })?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(local)?;
            on_bytes(size);
        }
        file.flush().await.map_err(local)?;
        Ok(Transferred {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Lists every object key under `prefix`.
    pub async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectPath>, Error> {
        let mut out = Vec::new();
        let mut s = self.store.list(Some(prefix));
        while let Some(m) = s.next().await {
            out.push(
                m.map_err(|source| Error::Store {
                    key: prefix.to_string(),
                    source,
                })?
                .location,
            );
        }
        Ok(out)
    }

    /// Deletes every object under `prefix` (and, on a directory store, the staging files an
    /// interrupted upload left behind). Deleting what is not there succeeds.
    pub async fn delete_prefix(&self, prefix: &ObjectPath) -> Result<usize, Error> {
        let keys = self.list(prefix).await?;
        let n = keys.len();
        for k in keys {
            match self.store.delete(&k).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(Error::Store {
                        key: k.to_string(),
                        source,
                    })
                }
            }
        }
        if let Some(root) = &self.local_root {
            let dir = root.join(prefix.as_ref());
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(Error::LocalFile {
                        path: dir.display().to_string(),
                        source,
                    })
                }
            }
        }
        Ok(n)
    }
}

fn store_io(key: &ObjectPath, e: std::io::Error) -> Error {
    // object_store's BufWriter reports store failures as io::Error wrapping object_store::Error.
    match e
        .into_inner()
        .map(|inner| inner.downcast::<object_store::Error>())
    {
        Some(Ok(source)) => Error::Store {
            key: key.to_string(),
            source: *source,
        },
        Some(Err(other)) => Error::Store {
            key: key.to_string(),
            source: object_store::Error::Generic {
                store: "buffered",
                source: other,
            },
        },
        None => Error::Store {
            key: key.to_string(),
            source: object_store::Error::Generic {
                store: "buffered",
                source: "write failed".into(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stream_round_trip_hashes_and_cleans() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::from_url(None, dir.path(), &AzureConfig::default()).unwrap();
        let keys = ImageKeys::new(Uuid::new_v4());
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut seen = 0;
        let up = s
            .put_stream(&keys.database(0), &data[..], |n| seen = n)
            .await
            .unwrap();
        assert_eq!(up.size, data.len() as u64);
        assert_eq!(seen, data.len() as u64);
        assert_eq!(up.sha256, hex::encode(Sha256::digest(&data)));
        let dest = dir.path().join("down");
        let down = s
            .get_to_file(&keys.database(0), &dest, |_| {})
            .await
            .unwrap();
        assert_eq!(down, up);
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(s.delete_prefix(&keys.prefix()).await.unwrap(), 1);
        assert!(s.list(&keys.prefix()).await.unwrap().is_empty());
        assert!(!dir
            .path()
            .join("images/images")
            .join(keys.prefix().as_ref())
            .exists());
    }
}

mod azure {
    //! The one Azure call object_store lacks: Create Container, signed with Shared Key.

    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    use super::Error;

    const VERSION: &str = "2021-08-06";

    /// PUT `{base}/{container}?restype=container`; an existing container is fine.
    pub async fn create_container(
        base: &str,
        account: &str,
        key: &str,
        container: &str,
        emulator: bool,
    ) -> Result<(), Error> {
        let err = |message: String| Error::CreateContainer {
            container: container.to_owned(),
            message,
        };
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        // Path-style (emulator) URLs carry the account in the path, so it appears twice here.
        let resource = if emulator {
            format!("/{account}/{account}/{container}\nrestype:container")
        } else {
            format!("/{account}/{container}\nrestype:container")
        };
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{VERSION}\n{resource}"
        );
        let key = B64
            .decode(key)
            .map_err(|_| err("the account key is not base64".into()))?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&key).map_err(|_| err("bad account key".into()))?;
        mac.update(to_sign.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        let resp = reqwest::Client::new()
            .put(format!("{base}/{container}?restype=container"))
            .header("x-ms-date", &date)
            .header("x-ms-version", VERSION)
            .header("Authorization", format!("SharedKey {account}:{sig}"))
            .header("Content-Length", "0")
            .send()
            .await
            .map_err(|e| err(crate::tasks::error_chain(&e)))?;
        match resp.status().as_u16() {
            201 | 409 => Ok(()),
            s => Err(err(format!(
                "HTTP {s}: {}",
                resp.text().await.unwrap_or_default()
            ))),
        }
    }
}

/// The manifest of an image (`manifest.json`): what a restore needs to find and check every object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub image_id: Uuid,
    pub postgres_version: String,
    pub image_type: entity::ImageType,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub globals: ObjectEntry,
    pub databases: Vec<DatabaseEntry>,
}

/// One object of an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// One database of an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseEntry {
    pub name: String,
    #[serde(flatten)]
    pub object: ObjectEntry,
}

impl Manifest {
    /// The current manifest format.
    pub const FORMAT_VERSION: u32 = 1;

    /// Total bytes of every object the manifest lists.
    pub fn total_size(&self) -> u64 {
        self.globals.size + self.databases.iter().map(|d| d.object.size).sum::<u64>()
    }
}
