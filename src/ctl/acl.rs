//! `warren ctl acl get|set PATH`: a node's ACL names (read, write, change-acl: files in
//! `/ls/<deployment>/acl/`, docs/design.md §3) and, for `set`, the principals of ACL files.
//!
//! `set` writes the ACL files it is given first and changes the node's names last, so a
//! name never points at a file that is not yet written (which would lock everyone out).

use clap::Subcommand;
use warren_client::{AclNames, OpenOptions, Session};

use super::failure::Failure;
use super::output::{self, Output, Record};

/// `warren ctl acl …`.
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Print a node's ACL names (empty: unrestricted).
    Get {
        /// The node.
        path: String,
    },
    /// Change a node's ACL names (those not given stay as they are) and, with --file,
    /// write ACL files' principals first.
    Set {
        /// The node.
        path: String,
        /// The ACL file naming who may open the node for reading ("" for anyone).
        #[arg(long, value_name = "NAME")]
        read: Option<String>,
        /// The ACL file naming who may open it for writing, lock it and delete it.
        #[arg(long, value_name = "NAME")]
        write: Option<String>,
        /// The ACL file naming who may change its ACL names.
        #[arg(long = "change-acl", value_name = "NAME")]
        change_acl: Option<String>,
        /// Write ACL file NAME (in /ls/<deployment>/acl/, created if missing) with these
        /// principals, one per line; repeat for several files.
        #[arg(long = "file", value_name = "NAME=PRINCIPAL[,PRINCIPAL…]")]
        files: Vec<String>,
    },
}

/// An ACL file to write: its name and principals.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AclFile {
    pub name: String,
    pub principals: Vec<String>,
}

/// Parses `--file NAME=PRINCIPAL[,PRINCIPAL…]` (an empty list is allowed: nobody).
pub(crate) fn parse_file(arg: &str) -> Result<AclFile, Failure> {
    let Some((name, list)) = arg.split_once('=') else {
        return Err(Failure::invalid(format!(
            "--file {arg:?} names no principals; write --file NAME=PRINCIPAL[,PRINCIPAL…], \
             e.g. --file readers=alice,bob"
        )));
    };
    let name = name.trim();
    if name.is_empty() || name.contains('/') {
        return Err(Failure::invalid(format!(
            "--file {arg:?}: {name:?} is not an ACL file name; give the file's name in \
             /ls/<deployment>/acl/ (no slashes), e.g. readers"
        )));
    }
    let principals: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    Ok(AclFile {
        name: name.to_string(),
        principals,
    })
}

/// The ACL names after `set`: those given replace the current ones.
pub(crate) fn merged(
    current: &AclNames,
    read: Option<String>,
    write: Option<String>,
    change_acl: Option<String>,
) -> AclNames {
    AclNames {
        read: read.unwrap_or_else(|| current.read.clone()),
        write: write.unwrap_or_else(|| current.write.clone()),
        change_acl: change_acl.unwrap_or_else(|| current.change_acl.clone()),
    }
}

/// What `acl get` and `acl set` print: `path`, `read`, `write`, `change_acl` (`(none)` in
/// the text forms for an unset name, `""` in JSON).
pub(crate) fn acl_text(path: &str, acl: &AclNames, out: Output) -> String {
    let show = |n: &str| {
        if n.is_empty() {
            "(none)".to_string()
        } else {
            n.to_string()
        }
    };
    out.record(
        &Record::default()
            .field("path", path)
            .text_only("read", show(&acl.read))
            .json_only("read", acl.read.as_str().into())
            .text_only("write", show(&acl.write))
            .json_only("write", acl.write.as_str().into())
            .text_only("change_acl", show(&acl.change_acl))
            .json_only("change_acl", acl.change_acl.as_str().into()),
    )
}

pub(crate) async fn run(
    session: &Session,
    command: AclCommand,
    out: Output,
) -> Result<(), Failure> {
    match command {
        AclCommand::Get { path } => {
            let (handle, info) = session.open(&path, OpenOptions::new()).await?;
            let full = handle.path().to_string();
            handle.close().await;
            output::print_line(&acl_text(&full, &info.stat.acl, out))
        }
        AclCommand::Set {
            path,
            read,
            write,
            change_acl,
            files,
        } => {
            let files = files
                .iter()
                .map(|f| parse_file(f))
                .collect::<Result<Vec<_>, _>>()?;
            let acl_dir = format!("/ls/{}/acl", session.deployment());
            for f in &files {
                let mut data = f.principals.join("\n").into_bytes();
                if !data.is_empty() {
                    data.push(b'\n');
                }
                super::nodes::put(
                    session,
                    &format!("{acl_dir}/{}", f.name),
                    data,
                    None,
                    false,
                    Output::default(),
                )
                .await?;
            }
            let (handle, info) = session.open(&path, OpenOptions::new().change_acl()).await?;
            let full = handle.path().to_string();
            let acl = merged(&info.stat.acl, read, write, change_acl);
            let set = if acl == info.stat.acl {
                Ok(info.stat)
            } else {
                handle.set_acl(acl).await
            };
            handle.close().await;
            let stat = set?;
            output::print_line(&acl_text(&full, &stat.acl, out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_argument_names_a_file_and_its_principals() {
        assert_eq!(
            parse_file("readers= alice, bob ,").unwrap(),
            AclFile {
                name: "readers".into(),
                principals: vec!["alice".into(), "bob".into()],
            }
        );
        assert_eq!(
            parse_file("nobody=").unwrap().principals,
            Vec::<String>::new()
        );
        for bad in ["readers", "=alice", "a/b=alice"] {
            let e = parse_file(bad).unwrap_err();
            assert_eq!(e.code, "INVALID_ARGUMENT");
            assert!(e.message.contains("--file"), "{}", e.message);
        }
    }

    #[test]
    fn set_keeps_the_names_not_given() {
        let current = AclNames {
            read: "r".into(),
            write: "w".into(),
            change_acl: "c".into(),
        };
        let m = merged(&current, Some(String::new()), None, Some("admins".into()));
        assert_eq!(
            m,
            AclNames {
                read: String::new(),
                write: "w".into(),
                change_acl: "admins".into(),
            }
        );
        let text = acl_text("/ls/local/f", &m, Output::default());
        assert_eq!(
            text,
            "path: /ls/local/f\nread: (none)\nwrite: w\nchange_acl: admins"
        );
        let json: serde_json::Value = serde_json::from_str(&acl_text(
            "/ls/local/f",
            &m,
            Output {
                json: true,
                table: false,
            },
        ))
        .unwrap();
        assert_eq!(json["change_acl"], "admins");
        assert_eq!(json["read"], "");
    }
}
