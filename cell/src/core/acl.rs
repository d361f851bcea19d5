//! ACL checks: the ACL files named by a node govern who may open, create in, change and
//! delete it; files held by another cell are supplied by the server (see
//! [`Master::supply_acls`]).

use super::path;
use super::{intent, partition::retry_shortly, Master};
use crate::store::AclNames;
use warren_proto::WarrenError;

/// ACL names are file names in `/ls/<deployment>/acl/`: each must be a valid component
/// (empty means unrestricted).
pub(super) fn check_acl_names(acl: &AclNames) -> Result<(), WarrenError> {
    for name in [&acl.read, &acl.write, &acl.change_acl] {
        if !name.is_empty() {
            path::check_component(name, name)?;
        }
    }
    Ok(())
}

impl Master {
    /// Supplies the contents of ACL files held by other cells (path → contents, `None`:
    /// the file does not exist) for the calls that follow, until replaced.
    pub fn supply_acls(&mut self, files: impl IntoIterator<Item = (String, Option<Vec<u8>>)>) {
        self.acl_supply = files.into_iter().collect();
    }

    /// Fails the call if an ACL check needed a file held by another cell that was not
    /// supplied: called before a call changes anything (the server then reads the files
    /// and runs the call again).
    pub(super) fn acls_complete(&self) -> Result<(), WarrenError> {
        let needed = self.acl_needed.borrow();
        if needed.is_empty() {
            return Ok(());
        }
        Err(retry_shortly(format_args!(
            "the ACL check needs {} held by another cell, which could not be read yet",
            needed.iter().cloned().collect::<Vec<_>>().join(", ")
        )))
    }

    /// Checks `principal` against ACL file `name` (docs/design.md §3: files in /ls/<dep>/acl/).
    pub(super) fn acl_allows(
        &self,
        principal: &str,
        name: &str,
        what: &str,
        path: &str,
    ) -> Result<(), WarrenError> {
        if name.is_empty() {
            return Ok(());
        }
        let file = format!("{}/acl/{name}", path::root_of(&self.cfg.deployment));
        // A file held by another cell is read there by the server and supplied; until
        // then the check is noted as incomplete (the call then changes nothing, see
        // `acls_complete`).
        let contents: Option<&[u8]> = if self.owner_elsewhere(&file, false)?.is_some() {
            match self.acl_supply.get(&file) {
                Some(c) => c.as_deref(),
                None => {
                    self.acl_needed.borrow_mut().insert(file);
                    return Ok(());
                }
            }
        } else {
            self.nodes.get(&file).map(|n| n.contents.as_slice())
        };
        let Some(contents) = contents else {
            return Err(WarrenError::permission_denied(format!(
                "{what} on {path} is governed by ACL file {file}, which does not exist"
            )));
        };
        let text = String::from_utf8_lossy(contents);
        if text
            .lines()
            .map(str::trim)
            .any(|l| !l.is_empty() && l == principal)
        {
            return Ok(());
        }
        Err(WarrenError::permission_denied(format!(
            "principal {principal:?} may not {what} {path}: it is not listed in ACL file {file}"
        )))
    }

    /// Checks the read ACL of `path` again on a read by session `sid`: the ACL file or the
    /// node's ACL names may have changed since the handle was opened, and a proxy that
    /// cannot judge a read from its cache forwards it here (docs/security.md). An ACL file
    /// held by another cell and not supplied is not fetched for a read: the read is judged
    /// by the check its `Open` passed.
    pub(super) fn check_read_acl(
        &self,
        sid: crate::store::SessionId,
        path: &str,
    ) -> Result<(), WarrenError> {
        let name = &self.nodes[path].rec.meta.acl.read;
        if name.is_empty() {
            return Ok(());
        }
        let file = format!("{}/acl/{name}", path::root_of(&self.cfg.deployment));
        if self.owner_elsewhere(&file, false)?.is_some() && !self.acl_supply.contains_key(&file) {
            return Ok(());
        }
        self.acl_allows(&self.sessions[&sid].rec.principal, name, "read", path)
    }

    /// Refuses a change to the reserved subtree `/ls/<d>/warren/` (the partition map,
    /// reshard jobs) unless `principal` is an operator or a cell ([`super::CallerRules`];
    /// the cells' own writes of the subtree take no session and are not checked).
    pub(super) fn check_reserved_write(
        &self,
        principal: &str,
        what: &str,
        path: &str,
    ) -> Result<(), WarrenError> {
        if !warren_router::is_reserved(path) || self.cfg.callers.is_operator(principal) {
            return Ok(());
        }
        Err(WarrenError::permission_denied(format!(
            "principal {principal:?} may not {what} {path}: the reserved subtree {}/{}/ (the \
             partition map, reshard jobs) is written only by operators ({:?} or a principal \
             in the cell's operator_principals, --operator-principal)",
            path::root_of(&self.cfg.deployment),
            warren_router::RESERVED,
            super::OPERATOR_PRINCIPAL,
        )))
    }

    pub(super) fn check_open_acl(
        &self,
        principal: &str,
        acl: &AclNames,
        want: u32,
        path: &str,
    ) -> Result<(), WarrenError> {
        if want & intent::READ != 0 {
            self.acl_allows(principal, &acl.read, "read", path)?;
        }
        if want & intent::WRITE != 0 {
            self.acl_allows(principal, &acl.write, "write", path)?;
        }
        if want & intent::CHANGE_ACL != 0 {
            self.acl_allows(principal, &acl.change_acl, "change the ACL of", path)?;
        }
        Ok(())
    }
}
