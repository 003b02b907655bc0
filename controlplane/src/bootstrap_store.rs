//! Keeping the sealed bootstrap data in the store, and getting it back from a snapshot.
//!
//! - [`keep_in_store`]: once this server serves as a voter, it makes sure the store holds the
//!   cluster's bootstrap data sealed with the token's secret (written when missing or when it
//!   holds other CAs; left alone when it does not open with this secret, with a warning).
//! - [`recover_from_snapshot`]: before a restore onto a data dir without CAs, the snapshot's
//!   bootstrap data is opened with the given token and its CAs written, so the restored
//!   cluster keeps the certificates its clients and servers trust.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftstore::node::NodeHandle;
use raftstore::pb::etcdserverpb::{PutRequest, RangeRequest};
use tokio::sync::watch;

use crate::bootstrap_seal;
use crate::server_tls::TlsDir;
use crate::supervisor::BootstrapData;
use crate::token::Token;

/// Pause between attempts while the member cannot write yet (no leader, still a learner).
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Writes `data` sealed with `token`'s secret into the store once the member serves; returns
/// when done or when `stop` turns true.
pub async fn keep_in_store(
    mut serving: watch::Receiver<Option<NodeHandle>>,
    mut stop: watch::Receiver<bool>,
    token: Token,
    data: BootstrapData,
) {
    let Some(handle) = crate::server::serving_member(&mut serving, &mut stop).await else {
        return;
    };
    loop {
        let status = handle.status();
        if status.has_leader() && !status.is_learner {
            match store_once(&handle, &token, &data).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!("keeping the bootstrap data in the store: {error:#}")
                }
            }
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(RETRY_INTERVAL) => {}
        }
    }
}

async fn store_once(handle: &NodeHandle, token: &Token, data: &BootstrapData) -> Result<()> {
    let key = bootstrap_seal::bootstrap_key(&token.secret).into_bytes();
    let stored = handle
        .range(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await
        .context("reading the stored bootstrap data")?;
    if let Some(kv) = stored.kvs.first() {
        match bootstrap_seal::open(&token.secret, &kv.value) {
            Ok(existing) if existing.cas == data.cas => return Ok(()),
            Ok(_) => tracing::info!("the stored bootstrap data names other CAs; replacing it"),
            Err(error) => {
                tracing::warn!("leaving the stored bootstrap data as it is: {error:#}");
                return Ok(());
            }
        }
    }
    let value = bootstrap_seal::seal(&token.secret, data)?;
    handle
        .put(PutRequest {
            key,
            value,
            ..Default::default()
        })
        .await
        .context("writing the bootstrap data")?;
    tracing::info!("the cluster's bootstrap data is kept in the store, sealed with the token");
    Ok(())
}

/// Writes the CAs of the bootstrap data in the snapshot at `snapshot` into `tls_dir`, opened
/// with `token`'s secret. Returns false (writing nothing) when no token is given or the
/// snapshot holds none (one taken from a plain etcd or `k3rs etcd`), so new CAs are made as
/// on a first start; a token that does not open the data is an error.
pub fn recover_from_snapshot(
    snapshot: &Path,
    token: Option<&Token>,
    tls_dir: &TlsDir,
) -> Result<bool> {
    let Some(token) = token else {
        tracing::warn!(
            "no token given: the restored cluster gets new certificate authorities; give the \
             old cluster's token (--token or --token-file) to keep its certificates"
        );
        return Ok(false);
    };
    let key = bootstrap_seal::bootstrap_key(&token.secret);
    let mut stored = crate::etcd_snapshot::compress::read_snapshot(snapshot, |input, _| {
        Ok(snapshots::values_with_prefix(
            input,
            bootstrap_seal::BOOTSTRAP_PREFIX.as_bytes(),
        )?)
    })
    .with_context(|| {
        format!(
            "snapshot {} cannot be restored; nothing was changed",
            snapshot.display()
        )
    })?;
    let Some(sealed) = stored.remove(key.as_bytes()) else {
        if !stored.is_empty() {
            bail!(
                "the snapshot's certificate authorities are sealed with another token than the \
                 one given: give the token of the cluster the snapshot was taken from; nothing \
                 was changed"
            );
        }
        tracing::warn!(
            snapshot = %snapshot.display(),
            "the snapshot holds no bootstrap data: the restored cluster gets new certificate \
             authorities (clients need the new CA)"
        );
        return Ok(false);
    };
    let data = bootstrap_seal::open(&token.secret, &sealed)
        .context("recovering the cluster's certificates from the snapshot; nothing was changed")?;
    crate::join::write_cas(&data, tls_dir)?;
    tracing::info!(
        snapshot = %snapshot.display(),
        "recovered the cluster's certificate authorities from the snapshot"
    );
    Ok(true)
}
