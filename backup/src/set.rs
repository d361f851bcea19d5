//! A whole deployment's backups as one set (docs/backup.md, "Sets"): the meta cell's and
//! every data cell's, named by a set manifest `<deployment>/sets/<id>.json` written after
//! all of them. A set is consistent when every member was taken under one partition map
//! epoch with no reshard in progress (no staged records, no hand-off ahead of the map);
//! restoring it is restoring each member (docs/operations.md).

use crate::{BackupError, Destination, Manifest};
use serde::{Deserialize, Serialize};

/// One member of a set: a cell's backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub cell: String,
    /// The backup's key under the set's destination.
    pub key: String,
    pub epoch: u64,
    pub map_epoch: u64,
}

/// `<deployment>/sets/<id>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetManifest {
    pub id: String,
    pub deployment: String,
    pub taken_at: String,
    /// The map epoch every member was taken under (the meta cell's).
    pub map_epoch: u64,
    pub members: Vec<Member>,
}

/// The key of set `id` of `deployment`.
pub fn set_key(deployment: &str, id: &str) -> String {
    format!("{deployment}/sets/{id}.json")
}

/// Writes the set manifest naming `members` (each already written), after them.
pub async fn write(
    dest: &Destination,
    id: &str,
    deployment: &str,
    members: &[(String, Manifest)],
) -> Result<SetManifest, BackupError> {
    let set = SetManifest {
        id: id.to_owned(),
        deployment: deployment.to_owned(),
        taken_at: members
            .iter()
            .map(|(_, m)| m.taken_at.clone())
            .min()
            .unwrap_or_default(),
        map_epoch: members.iter().map(|(_, m)| m.map_epoch).max().unwrap_or(0),
        members: members
            .iter()
            .map(|(key, m)| Member {
                cell: m.cell.clone(),
                key: key.clone(),
                epoch: m.epoch,
                map_epoch: m.map_epoch,
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&set).expect("a set manifest always encodes");
    bytes.push(b'\n');
    dest.put(&set_key(deployment, id), bytes).await?;
    Ok(set)
}

/// Why a set is not one consistent whole.
pub fn inconsistencies(members: &[Manifest]) -> Vec<String> {
    let mut out = Vec::new();
    let epochs: std::collections::BTreeSet<u64> = members.iter().map(|m| m.map_epoch).collect();
    if epochs.len() > 1 {
        out.push(format!(
            "the members were taken under different map epochs ({}): a reshard or map \
             change happened while the set was taken; take the set again",
            members
                .iter()
                .map(|m| format!("{} at {}", m.cell, m.map_epoch))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for m in members {
        if m.counts.staged > 0 {
            out.push(format!(
                "cell {} holds {} staged reshard record(s): a reshard was in progress",
                m.cell, m.counts.staged
            ));
        }
        if m.handoffs_ahead_of_map > 0 {
            out.push(format!(
                "cell {} had handed off {} slot(s) under a map newer than its {}: a reshard \
                 was in progress",
                m.cell, m.handoffs_ahead_of_map, m.map_epoch
            ));
        }
    }
    out
}

/// Reads set `id` of `deployment` and verifies every member (checksums, decoding) and the
/// set's consistency. Returns the set and each member's result.
pub async fn verify(
    dest: &Destination,
    deployment: &str,
    id: &str,
) -> Result<
    (
        SetManifest,
        Vec<(Member, Result<Manifest, BackupError>)>,
        Vec<String>,
    ),
    BackupError,
> {
    let key = set_key(deployment, id);
    let bytes = dest.get(&key).await?.ok_or_else(|| BackupError::Missing {
        backup: format!("{dest}/{key}"),
        detail: "no such set manifest (`warren ctl backup list` names the sets)".into(),
    })?;
    let set: SetManifest = serde_json::from_slice(&bytes).map_err(|e| BackupError::Format {
        backup: format!("{dest}/{key}"),
        detail: format!("the set manifest cannot be read: {e}"),
    })?;
    let mut results = Vec::new();
    for m in &set.members {
        results.push((m.clone(), crate::verify(dest, &m.key).await));
    }
    let ok: Vec<Manifest> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect();
    let problems = inconsistencies(&ok);
    Ok((set, results, problems))
}

/// The set ids of `deployment` at `dest`, sorted (they sort by time).
pub async fn list(dest: &Destination, deployment: &str) -> Result<Vec<String>, BackupError> {
    Ok(dest
        .children(&format!("{deployment}/sets"))
        .await?
        .into_iter()
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::sample;
    use crate::TakeInfo;

    fn info(cell: &str, map_epoch: u64) -> TakeInfo {
        TakeInfo {
            deployment: "local".into(),
            cell: cell.into(),
            epoch: 3,
            map_epoch,
            store: "embedded".into(),
            warren_version: "test".into(),
            taken_at_ms: 5_000,
        }
    }

    #[tokio::test]
    async fn a_set_verifies_each_member_and_its_one_map_epoch() {
        let t = tempfile::tempdir().unwrap();
        let d = Destination::Dir(t.path().into());
        let mut snap = sample();
        snap.staged.clear();
        let mut members = Vec::new();
        for cell in ["meta", "a", "b"] {
            let l = crate::take(&d, std::sync::Arc::new(snap.clone()), &info(cell, 4))
                .await
                .unwrap();
            members.push((l.key, l.manifest));
        }
        write(&d, "s1", "local", &members).await.unwrap();
        assert_eq!(list(&d, "local").await.unwrap(), ["s1"]);
        let (set, results, problems) = verify(&d, "local", "s1").await.unwrap();
        assert_eq!(set.members.len(), 3);
        assert!(results.iter().all(|(_, r)| r.is_ok()));
        assert!(problems.is_empty(), "{problems:?}");
        // Sets are not listed as backups.
        assert_eq!(crate::list(&d).await.unwrap().len(), 3);

        // A member under another map epoch, and one with staged records: both named.
        let late = crate::take(&d, std::sync::Arc::new(sample()), &info("c", 5))
            .await
            .unwrap();
        members.push((late.key, late.manifest));
        write(&d, "s2", "local", &members).await.unwrap();
        let (_, _, problems) = verify(&d, "local", "s2").await.unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("different map epochs"));
        assert!(problems[1].contains("staged"));
        assert!(verify(&d, "local", "nope").await.is_err());
    }
}
